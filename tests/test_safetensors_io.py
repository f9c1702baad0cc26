"""safetensors_io over the library: torch-written files read bit-exactly (bfloat16 as ml_dtypes), slices read
alone, what we write loads in torch, and bad files or shard plans are named."""
import numpy as np
import pytest

from camel_jax.convert.safetensors_io import SafetensorsFile, np_dtype, write_safetensors

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")


def test_reads_what_the_library_writes(tmp_path):
    tensors = {"a.bf16": torch.randn(3, 5).to(torch.bfloat16), "b.f16": torch.randn(7).half(),
               "c.f32": torch.randn(2, 3, 4), "d.i64": torch.arange(6).reshape(2, 3)}
    st_torch.save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    f = SafetensorsFile(str(tmp_path / "x.safetensors"))
    assert sorted(f.keys()) == sorted(tensors) and f.metadata == {"format": "pt"}
    for k, t in tensors.items():
        got = f.get(k)
        ref = t.view(torch.int16).numpy().view(np_dtype("bfloat16")) if t.dtype == torch.bfloat16 else t.numpy()
        assert got.dtype == ref.dtype and np.array_equal(got, ref), k
    rows = f.get_slice("a.bf16")  # a host reading only its shard: rows 1..2, columns 2..4
    assert rows.get_shape() == [3, 5]
    part = rows[1:3, 2:5]
    ref = tensors["a.bf16"][1:3, 2:5].contiguous().view(torch.int16).numpy().view(np_dtype("bfloat16"))
    assert part.dtype == np_dtype("bfloat16") and part.tobytes() == ref.tobytes()


def test_library_reads_what_we_write(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {"w": rng.normal(size=(4, 6)).astype(np_dtype("bfloat16")), "n": rng.normal(size=(5,)).astype("f4"),
              "h": rng.normal(size=(3, 3)).astype("f2")}
    nbytes = write_safetensors(str(tmp_path / "y.safetensors"), iter(arrays.items()),
                               {k: (v.shape, v.dtype) for k, v in arrays.items()})
    assert nbytes == sum(v.nbytes for v in arrays.values())
    loaded = st_torch.load_file(tmp_path / "y.safetensors")
    assert loaded["w"].dtype == torch.bfloat16
    assert np.array_equal(loaded["w"].view(torch.int16).numpy().view(np_dtype("bfloat16")), arrays["w"])
    assert np.array_equal(loaded["n"].numpy(), arrays["n"]) and np.array_equal(loaded["h"].numpy(), arrays["h"])


def test_mismatches_and_truncation_are_named(tmp_path):
    a = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"z.safetensors: tensor a \(2, 2\) float32 does not match the planned a"):
        write_safetensors(str(tmp_path / "z.safetensors"), iter([("a", a)]), {"a": ((2, 3), np.float32)})
    with pytest.raises(ValueError, match=r"got 1 tensors, planned 2"):
        write_safetensors(str(tmp_path / "z.safetensors"), iter([("a", a)]),
                          {"a": ((2, 2), np.float32), "b": ((1,), np.float32)})
    write_safetensors(str(tmp_path / "ok.safetensors"), iter([("a", a)]), {"a": ((2, 2), np.float32)})
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-4])
    with pytest.raises(ValueError, match=r"cut.safetensors: not a readable safetensors file \(.*not fully covered"):
        SafetensorsFile(str(tmp_path / "cut.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match=r"junk.safetensors: not a readable safetensors file \(.*invalid JSON"):
        SafetensorsFile(str(tmp_path / "junk.safetensors"))
    with pytest.raises(ValueError, match=r"got more than the 1 planned tensors"):
        write_safetensors(str(tmp_path / "z.safetensors"), iter([("a", a), ("b", a)]), {"a": ((2, 2), np.float32)})
