"""`--mesh=dp4,mp8` specs: parsing, checking against the devices, model and batch, and building the Mesh.

Every check here runs before anything is traced or compiled, so a wrong flag costs seconds, not an hour.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

from camel_jax.model.config import LlamaConfig

AXES = ("dp", "fsdp", "mp")


class MeshError(ValueError):
    pass


def parse_mesh(spec: str | None, num_devices: int) -> dict[str, int]:
    """'dp4,mp8' or 'dp2,fsdp-1' -> {'dp': 4, 'fsdp': 1, 'mp': 8}; unnamed axes are 1, one axis may be -1 (the rest).
    Empty/None puts every device on fsdp."""
    sizes = {a: 1 for a in AXES}
    if not spec:
        sizes["fsdp"] = num_devices
        return sizes
    seen, rest = set(), None
    for part in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"([a-z]+)[:=]?(-1|\d+)", part)
        if not m:
            raise MeshError(f"--mesh={spec!r}: cannot parse {part!r}; expected entries like dp4, fsdp-1, mp8")
        name, size = m.group(1), int(m.group(2))
        if name not in AXES:
            raise MeshError(f"--mesh={spec!r}: unknown axis {name!r}; axes are {', '.join(AXES)}")
        if name in seen:
            raise MeshError(f"--mesh={spec!r}: axis {name!r} given twice")
        seen.add(name)
        if size == -1:
            if rest is not None:
                raise MeshError(f"--mesh={spec!r}: only one axis may be -1, got {rest!r} and {name!r}")
            rest = name
        elif size == 0:
            raise MeshError(f"--mesh={spec!r}: axis {name!r} has size 0")
        else:
            sizes[name] = size
    known = math.prod(sizes[a] for a in AXES if a != rest)
    if rest is not None:
        if num_devices % known:
            raise MeshError(f"--mesh={spec!r}: {num_devices} devices do not divide by the fixed axes' product {known}")
        sizes[rest] = num_devices // known
    total = math.prod(sizes.values())
    if total != num_devices:
        raise MeshError(f"--mesh={spec!r} needs {total} devices but {num_devices} are available "
                        f"({jax.default_backend()}); use -1 on one axis to take the rest")
    return sizes


def check_model(sizes: dict[str, int], cfg: LlamaConfig) -> None:
    """Model-parallel divisibility: heads, kv heads, widths and the padded vocabulary must split evenly."""
    mp, fsdp = sizes["mp"], sizes["fsdp"]
    errs = []
    if cfg.num_heads % mp:
        errs.append(f"num_heads {cfg.num_heads} is not divisible by mp={mp}")
    if cfg.kv_heads % mp:
        errs.append(f"num_kv_heads {cfg.kv_heads} is not divisible by mp={mp}")
    if cfg.intermediate_size % mp:
        errs.append(f"intermediate_size {cfg.intermediate_size} is not divisible by mp={mp}")
    if cfg.padded_vocab % mp:  # the stored table, not the real vocabulary (model/vocab.py)
        errs.append(f"vocab_size {cfg.vocab_size} padded to {cfg.padded_vocab} (vocab_multiple="
                    f"{cfg.vocab_multiple}) is not divisible by mp={mp}; a checkpoint converted before camel_jax "
                    f"padded vocabularies needs converting again")
    if cfg.hidden_size % fsdp:
        errs.append(f"hidden_size {cfg.hidden_size} is not divisible by fsdp={fsdp}")
    if errs:
        raise MeshError("mesh does not fit the model: " + "; ".join(errs))


def check_batch(sizes: dict[str, int], batch: int, what: str = "batch size") -> None:
    shards = sizes["dp"] * sizes["fsdp"]
    if batch % shards:
        raise MeshError(f"{what} {batch} is not divisible by dp×fsdp = {sizes['dp']}×{sizes['fsdp']} = {shards}")


def _slices(devices: Sequence[jax.Device]) -> int:
    return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(sizes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The devices laid out as dp×fsdp×mp by the topology (`jax.make_mesh`: rings and tori, not id order).

    Several TPU slices (multi-slice, joined over the data-centre network): a hybrid mesh whose dp axis spans the
    slices, so only the data-parallel gradient reduction crosses the slow links. A layout the topology cannot give
    is an error naming the mesh, never a silent reshape in id order (which would put mp across hosts unnoticed)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = tuple(sizes[a] for a in AXES)
    auto = (AxisType.Auto,) * len(AXES)  # GSPMD propagation, as the partition rules assume
    n = _slices(devices)
    what = f"--mesh={','.join(f'{a}{sizes[a]}' for a in AXES)} on {len(devices)} {devices[0].device_kind} device(s)"
    if n > 1:
        if sizes["dp"] % n:
            raise MeshError(f"{what}: the devices form {n} slices, and only dp may span slices: dp={sizes['dp']} is "
                            f"not a multiple of {n}")
        per_slice = (sizes["dp"] // n, sizes["fsdp"], sizes["mp"])
        try:
            arr = mesh_utils.create_hybrid_device_mesh(per_slice, (n, 1, 1), devices, allow_split_physical_axes=True)
        except (ValueError, NotImplementedError, AssertionError) as e:
            raise MeshError(f"{what} in {n} slices: cannot lay out {per_slice} within each slice: {e}") from e
        return Mesh(arr, AXES, axis_types=auto)
    try:
        return jax.make_mesh(shape, AXES, axis_types=auto, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        pass  # jax.make_mesh keeps each mesh axis on whole physical axes; allow splitting them, as MaxText does
    try:
        arr = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError) as e:
        raise MeshError(f"{what}: the device topology cannot be laid out as {shape}: {e}") from e
    return Mesh(arr, AXES, axis_types=auto)


def build_mesh(spec: str | None, cfg: LlamaConfig | None = None, batch: int | None = None,
               devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Parse and check everything, then build. The only entry point the CLIs use."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = parse_mesh(spec, len(devices))
    if cfg is not None:
        check_model(sizes, cfg)
    if batch is not None:
        check_batch(sizes, batch)
    return make_mesh(sizes, devices)


def mesh_str(mesh: Mesh) -> str:
    return ",".join(f"{a}{mesh.shape[a]}" for a in mesh.axis_names)
