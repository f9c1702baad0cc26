"""TPU slices by their Cloud names (`v4-64`, `v5e-16`, ...): the one table of what each generation's device holds.

The number in a name counts TensorCores on v2, v3, v4 and v5p (v4-64 is 32 chips) and chips on v5e and v6e
(v5e-16 is 16 chips). JAX sees one device per core on v2/v3 and one per chip elsewhere (v4/v5p join a chip's two
cores as a megacore), so every per-device figure below is per JAX device, the unit memory_analysis reports in.
Sources: ../shared/reference/tpu_planner_facts.md §1 (Google's generation pages, MaxText's accelerator map, the
usable HBM seen in compile-time OOM reports) and §4 (published MFU).
"""
from __future__ import annotations

import dataclasses
import os
import re

GIB = 1 << 30


class TopologyError(ValueError):
    """A --topology the table cannot resolve; the message names the flag and the accepted names."""


@dataclasses.dataclass(frozen=True)
class Generation:
    name: str  # as in the slice name: v3, v4, v5e, ...
    topology_prefix: str  # libtpu's topology string prefix (v5p is "v5:")
    chip_config: str  # "megacore" joins a chip's two TensorCores into one device
    name_counts: str  # "cores" or "chips": what N in vX-N counts
    devices_per_chip: int
    cores_per_chip: int
    dims: int  # 2D torus (v2/v3/v5e/v6e) or 3D (v4/v5p)
    max_chips: int
    hbm_bytes: int  # nominal HBM per device
    usable_bytes: int  # what XLA allows one program per device (its OOM message's "of ..G")
    usable_source: str
    peak_flops: float  # dense bf16 FLOP/s per device
    mfu: float  # a published model-FLOPs utilisation for LLaMA-class training, the default --mfu
    mfu_source: str


def _gib(x: float) -> int:
    return int(round(x * GIB))


GENERATIONS: dict[str, Generation] = {g.name: g for g in (
    Generation("v2", "v2", "default", "cores", 2, 2, 2, 256, _gib(8), _gib(7.48),
               "inferred: 8 GiB per core less v3's 0.52 GiB reserve (no v2 report found)", 45e12 / 2, 0.473,
               "none published for v2; v3's (Levanter 6.7B, v3-256)"),
    Generation("v3", "v3", "default", "cores", 2, 2, 2, 1024, _gib(16), _gib(15.48),
               "compile-time OOM report on v3-8 (LWM #60)", 123e12 / 2, 0.473, "Levanter 6.7B on v3-256"),
    Generation("v4", "v4", "megacore", "cores", 1, 2, 3, 4096, _gib(32), _gib(30.75),
               "compile-time OOM report on v4-32 (EasyDeL #166); XLA's own message here", 275e12, 0.56,
               "MaxText 52B on v4-384"),
    Generation("v5p", "v5", "megacore", "cores", 1, 2, 3, 4096, _gib(95), _gib(95.74),
               "MaxText logs doc: bytes_limit", 459e12, 0.654, "MaxText Llama 2 70B on v5p-512"),
    Generation("v5e", "v5e", "default", "chips", 1, 1, 2, 256, _gib(16), _gib(15.75),
               "XLA's compile-time OOM message here (anchors §8.2)", 197e12, 0.561,
               "MaxText 128B on v5e-256 (its lowest synthetic figure)"),
    Generation("v6e", "v6e", "default", "chips", 1, 1, 2, 256, _gib(32), _gib(31.25),
               "an E1000 report (Enzyme-JAX PR #2422), TPU type unstated: unverified", 918e12, 0.438,
               "MaxText Llama 2 70B on v6e-256"),
)}


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # e.g. v4-64
    generation: Generation
    chips: int
    shape: tuple[int, ...]  # chips along each torus axis

    @property
    def devices(self) -> int:
        return self.chips * self.generation.devices_per_chip

    @property
    def cores(self) -> int:
        return self.chips * self.generation.cores_per_chip

    @property
    def topology_name(self) -> str:  # libtpu's: "v4:2x4x4"
        return f"{self.generation.topology_prefix}:{'x'.join(map(str, self.shape))}"

    @property
    def gcp_type(self) -> str:  # Cloud TPU's accelerator type: v5e slices are "v5litepod-N"
        return self.name.replace("v5e-", "v5litepod-")

    @property
    def usable_bytes(self) -> int:
        return self.generation.usable_bytes

    def describe(self) -> str:
        g = self.generation
        return (f"{self.name} ({self.topology_name}): {self.chips} chips, {self.cores} TensorCores, {self.devices} "
                f"JAX devices of {g.usable_bytes / GIB:.2f} GiB usable HBM and {g.peak_flops / 1e12:.1f} bf16 "
                f"TFLOP/s each")


def _shape(chips: int, dims: int) -> tuple[int, ...]:
    """MaxText's slice shapes: from 2x2(x1), double the last of the shortest axes (v4-64 = 2x4x4, v5e-32 = 4x8)."""
    if chips == 1:
        return (1,) * dims
    shape = [2, 2] + [1] * (dims - 2)
    while shape[0] * shape[1] * (shape[2] if dims == 3 else 1) < chips:
        low = min(shape)
        i = max(j for j, s in enumerate(shape) if s == low)
        shape[i] *= 2
    return tuple(shape)


def valid_sizes(gen: Generation) -> list[int]:
    per = gen.cores_per_chip if gen.name_counts == "cores" else 1
    chips = ([1] if gen.name_counts == "chips" else []) + [4 << k for k in range(12) if 4 << k <= gen.max_chips]
    return [c * per for c in chips]


def parse_topology(name: str) -> Topology:
    """'v4-64' -> Topology (32 chips, 2x4x4); TopologyError naming --topology and the accepted names."""
    m = re.fullmatch(r"\s*(v\d+[a-z]?)-(\d+)\s*", str(name).lower())
    known = ", ".join(f"{g}-N" for g in GENERATIONS)
    if not m:
        raise TopologyError(f"--topology={name!r}: expected <generation>-<N> ({known}), e.g. v4-64 or v5e-16")
    gen_name, n = m.group(1), int(m.group(2))
    gen = GENERATIONS.get(gen_name)
    if gen is None:
        raise TopologyError(f"--topology={name!r}: unknown TPU generation {gen_name!r}; known: "
                            f"{', '.join(GENERATIONS)}")
    sizes = valid_sizes(gen)
    if n not in sizes:
        counts = "TensorCores (2 per chip)" if gen.name_counts == "cores" else "chips"
        raise TopologyError(f"--topology={name!r}: {gen.name}-N counts {counts}; N must be one of "
                            f"{', '.join(map(str, sizes))}")
    chips = n // gen.cores_per_chip if gen.name_counts == "cores" else n
    return Topology(f"{gen.name}-{n}", gen, chips, _shape(chips, gen.dims))


def topology_devices(topo: Topology, num_slices: int = 1) -> list:
    """The slice's devices as libtpu describes them (compile for, never run on, from a CPU host)."""
    # libtpu on a host that is no TPU VM: no metadata-server queries, no TPU_WORKER_HOSTNAMES/accelerator-type
    # complaints on stderr (it reads both only to find this host's place in a slice we describe explicitly), and no
    # lockfile that would refuse a second planner or test process on the same machine. Variables already set win.
    for var, value in (("TPU_SKIP_MDS_QUERY", "1"), ("TPU_WORKER_HOSTNAMES", "localhost"),
                       ("TPU_ACCELERATOR_TYPE", topo.gcp_type), ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
        os.environ.setdefault(var, value)
    try:
        from jax.experimental.topologies import get_topology_desc

        bounds = (1, 1, 1) if topo.chips == 1 else (2, 2, 1)
        return list(get_topology_desc(platform="tpu", topology_name=topo.topology_name,
                                      chip_config_name=topo.generation.chip_config, chips_per_host_bounds=bounds,
                                      num_slices=num_slices).devices)
    except Exception as e:  # no libtpu (a CPU-only jax install), or a topology this libtpu does not know
        raise TopologyError(f"--topology={topo.name}: cannot describe {topo.topology_name} for compiling: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (compiling for TPU "
                            f"needs libtpu: pip install -e '.[tpu]')") from None
