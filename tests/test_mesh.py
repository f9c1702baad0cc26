"""Mesh specs: parsing, -1 axes, and the clear errors that must come before any compile."""
import jax
import pytest

from camel_jax.model.mesh import AXES, MeshError, build_mesh, check_batch, mesh_str, parse_mesh
from camel_jax.model.config import get_preset


@pytest.mark.parametrize("spec, expected", [
    ("dp8", {"dp": 8, "fsdp": 1, "mp": 1}),
    ("fsdp8", {"dp": 1, "fsdp": 8, "mp": 1}),
    ("mp8", {"dp": 1, "fsdp": 1, "mp": 8}),
    ("dp2,fsdp2,mp2", {"dp": 2, "fsdp": 2, "mp": 2}),
    ("dp-1,mp2", {"dp": 4, "fsdp": 1, "mp": 2}),
    ("dp:2,fsdp:-1", {"dp": 2, "fsdp": 4, "mp": 1}),
    ("", {"dp": 1, "fsdp": 8, "mp": 1}),
])
def test_parse(spec, expected):
    assert parse_mesh(spec, 8) == expected


@pytest.mark.parametrize("spec, message", [
    ("dp4,mp8", "needs 32 devices but 8 are available"),
    ("tp8", "unknown axis 'tp'"),
    ("dp2,dp4", "given twice"),
    ("dp-1,fsdp-1", "only one axis may be -1"),
    ("dp3,fsdp-1", "do not divide"),
    ("dp=two", "cannot parse"),
    ("mp0", "size 0"),
])
def test_bad_specs_fail_clearly(spec, message):
    with pytest.raises(MeshError, match=message):
        parse_mesh(spec, 8)


def test_model_divisibility_checked_before_compiling():
    cfg = get_preset("tiny-gqa")  # 4 heads, 2 kv heads
    with pytest.raises(MeshError, match="num_heads 4 is not divisible by mp=8"):
        build_mesh("mp8", cfg)
    with pytest.raises(MeshError, match="num_kv_heads 2 is not divisible by mp=4"):
        build_mesh("dp2,mp4", cfg)


def test_batch_divisibility():
    with pytest.raises(MeshError, match=r"batch size 6 is not divisible by dp×fsdp = 2×2 = 4"):
        check_batch(parse_mesh("dp2,fsdp2,mp2", 8), 6)
    build_mesh("dp2,fsdp2,mp2", batch=8)


def test_build_uses_all_devices_in_axis_order():
    mesh = build_mesh("dp2,fsdp2,mp2")
    assert mesh.axis_names == AXES
    assert mesh.devices.size == len(jax.devices()) == 8
    assert mesh_str(mesh) == "dp2,fsdp2,mp2"
