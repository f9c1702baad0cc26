"""Mesh specs: parsing, -1 axes, and the clear errors that must come before any compile."""
import jax
import numpy as np
import pytest

from camel_jax.model.mesh import AXES, MeshError, build_mesh, check_batch, mesh_str, parse_mesh
from camel_jax.model.config import get_preset
from tpu_util import tpu_devices


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


def test_meshes_keep_automatic_sharding_propagation():
    """jax.make_mesh defaults to Explicit axes; the partition rules and constraints assume GSPMD's Auto."""
    mesh = build_mesh("dp2,fsdp2,mp2")
    assert set(mesh.axis_types) == {jax.sharding.AxisType.Auto}


def test_a_layout_the_devices_cannot_give_is_an_error_not_a_reshape(monkeypatch):
    from jax.experimental import mesh_utils

    def refuse(*a, **k):
        raise ValueError("cannot split the torus")

    monkeypatch.setattr(jax, "make_mesh", refuse)
    monkeypatch.setattr(mesh_utils, "create_device_mesh", refuse)
    with pytest.raises(MeshError, match=r"--mesh=dp2,fsdp2,mp2 on 8 .* cannot be laid out as \(2, 2, 2\): "
                                         r"cannot split the torus"):
        build_mesh("dp2,fsdp2,mp2")


def test_multi_slice_meshes_span_slices_with_dp_only():
    devices = tpu_devices(num_slices=2)  # 2 slices × 4 v5e chips, compiled for (not run) on this host
    mesh = build_mesh("dp2,fsdp2,mp2", devices=devices)
    slice_of = np.vectorize(lambda d: d.slice_index)(mesh.devices)
    assert (slice_of[0] == 0).all() and (slice_of[1] == 1).all()  # dp's two halves are the two slices
    assert set(mesh.axis_types) == {jax.sharding.AxisType.Auto}
    with pytest.raises(MeshError, match="form 2 slices, and only dp may span slices: dp=1"):
        build_mesh("fsdp4,mp2", devices=devices)
