"""Slice names resolve as each generation counts them (TensorCores on v2/v3/v4/v5p, chips on v5e/v6e), to libtpu's
topology strings, with the per-device HBM and peak of the generation; bad names are one clear error."""
import pytest

from camel_jax.plan.topology import GENERATIONS, GIB, TopologyError, parse_topology, topology_devices

# name: (chips, TensorCores, JAX devices, libtpu topology, usable GiB per device, bf16 TFLOP/s per device)
CASES = {
    "v2-8": (4, 8, 8, "v2:2x2", 7.48, 22.5),
    "v3-8": (4, 8, 8, "v3:2x2", 15.48, 61.5),
    "v3-32": (16, 32, 32, "v3:4x4", 15.48, 61.5),
    "v3-256": (128, 256, 256, "v3:8x16", 15.48, 61.5),
    "v4-8": (4, 8, 4, "v4:2x2x1", 30.75, 275.0),
    "v4-16": (8, 16, 8, "v4:2x2x2", 30.75, 275.0),
    "v4-32": (16, 32, 16, "v4:2x2x4", 30.75, 275.0),
    "v4-64": (32, 64, 32, "v4:2x4x4", 30.75, 275.0),
    "v4-128": (64, 128, 64, "v4:4x4x4", 30.75, 275.0),
    "v4-512": (256, 512, 256, "v4:4x8x8", 30.75, 275.0),
    "v5p-8": (4, 8, 4, "v5:2x2x1", 95.74, 459.0),
    "v5p-128": (64, 128, 64, "v5:4x4x4", 95.74, 459.0),
    "v5e-1": (1, 1, 1, "v5e:1x1", 15.75, 197.0),
    "v5e-4": (4, 4, 4, "v5e:2x2", 15.75, 197.0),
    "v5e-16": (16, 16, 16, "v5e:4x4", 15.75, 197.0),
    "v5e-32": (32, 32, 32, "v5e:4x8", 15.75, 197.0),
    "v5e-256": (256, 256, 256, "v5e:16x16", 15.75, 197.0),
    "v6e-64": (64, 64, 64, "v6e:8x8", 31.25, 918.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_names_count_cores_or_chips_by_generation(name):
    chips, cores, devices, topo_name, usable, tflops = CASES[name]
    t = parse_topology(name)
    assert (t.chips, t.cores, t.devices, t.topology_name) == (chips, cores, devices, topo_name)
    assert round(t.usable_bytes / GIB, 2) == usable
    assert t.generation.peak_flops == pytest.approx(tflops * 1e12)
    assert 0 < t.generation.mfu < 1 and t.generation.mfu_source and t.generation.usable_source


def test_every_generation_is_covered():
    assert {n.split("-")[0] for n in CASES} == set(GENERATIONS)


@pytest.mark.parametrize("bad, match", [
    ("v4", r"--topology='v4': expected <generation>-<N>"),
    ("tpu-v4-8", "expected <generation>-<N>"),
    ("v7-8", r"unknown TPU generation 'v7'; known: v2, v3, v4, v5p, v5e, v6e"),
    ("v4-4", r"v4-N counts TensorCores \(2 per chip\); N must be one of 8, 16, 32"),
    ("v4-63", "N must be one of"),
    ("v5e-3", r"v5e-N counts chips; N must be one of 1, 4, 8, 16"),
    ("v5e-512", "N must be one of .*256$"),
    ("v3-4", "N must be one of 8, 16, 32"),
])
def test_bad_names_say_what_is_accepted(bad, match):
    with pytest.raises(TopologyError, match=match):
        parse_topology(bad)


@pytest.mark.parametrize("name, kind", [("v3-32", "TPU v3"), ("v4-64", "TPU v4"), ("v5p-16", "TPU v5"),
                                        ("v5e-16", "TPU v5 lite"), ("v6e-8", "TPU v6 lite")])
def test_libtpu_describes_the_same_devices(name, kind):
    from tpu_util import tpu_devices

    tpu_devices()  # skips (with the reason) without libtpu
    t = parse_topology(name)
    devices = topology_devices(t)
    assert len(devices) == t.devices and {d.device_kind for d in devices} == {kind}
