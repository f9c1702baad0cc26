"""infer.quantize: the int8 round trip and per-channel scales; the int8 engine computes exactly the model whose weights
are the dequantized ones (so its only error is the weights' rounding), and on the real stories260K model stays
within a stated bound of fp32 with the same greedy tokens; int8 on a dp2,mp2 mesh equals one device; the CLI flag."""
import jax
import numpy as np
import pytest

from camel_jax.convert import llama2c
from camel_jax.infer import quantize as quant
from camel_jax.infer.engine import Engine, Request
from camel_jax.model.mesh import build_mesh

from test_llama2c import STORIES_BIN, TOK512_BIN

PROMPTS = [[1], [1, 403, 407, 261, 378], [1, 100, 200, 300, 400, 45, 67, 89]]
# Measured on stories260K (logits' std 5-10 at these prompts): max |int8 - fp32| 0.16-0.22, mean 0.04-0.09.
MAX_ABS, MEAN_ABS, GREEDY_TOKENS = 0.3, 0.12, 16


@pytest.fixture(scope="module")
def stories():
    params, cfg = llama2c.read_model(STORIES_BIN)
    return params, cfg.replace(dtype="float32")


def _last_logits(engine, prompt):
    tokens = np.zeros((1, engine.bucket(len(prompt))), np.int32)
    tokens[0, :len(prompt)] = prompt
    with engine._context():
        logits, _ = engine._prefill(engine.weights, tokens, np.int32(len(prompt)))
    return np.asarray(logits)[:engine.cfg.vocab_size]


def _dequantized(params, cfg):
    """The parameter tree whose fp32 weights are what the int8 engine's (int8, scale) pairs stand for."""
    def kernels(x):
        x = np.asarray(x)
        if x.ndim != 3:
            return x
        return np.stack([np.asarray(quant.dequantize(*quant.quantize_int8(w, 1), 1)) for w in x])
    out = {**params, "layers": jax.tree.map(kernels, params["layers"])}
    out["embed"] = {"embedding": np.asarray(quant.dequantize(*quant.quantize_int8(params["embed"]["embedding"], 0),
                                                             0))}
    assert cfg.tie_embeddings  # stories260K: the head is the embedding
    return out


def test_round_trip_and_scale_shapes():
    w = np.random.default_rng(0).normal(size=(48, 20)).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero output channel (as padded vocabulary rows)
    for axis, n in ((1, 20), (0, 48)):
        q, scale = quant.quantize_int8(w, axis)
        assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (n,) and scale.dtype == np.float32
        assert np.abs(q).max() == 127 and q.min() >= -127
        err = np.abs(np.asarray(quant.dequantize(q, scale, axis)) - w)
        bound = (scale[None, :] if axis == 1 else scale[:, None]) / 2  # rounding: half a step per entry
        assert np.all(err <= bound * (1 + 1e-6))
    q, scale = quant.quantize_int8(w, 1)
    assert scale[3] == 1.0 and not q[:, 3].any()
    np.testing.assert_array_equal(np.abs(q).max(axis=0)[[0, 1, 2, 4]], 127)  # each channel's absmax maps to 127
    with pytest.raises(ValueError, match="2-D"):
        quant.quantize_int8(w[0], 1)
    with pytest.raises(ValueError, match="quantize must be one of none, int8, got 'int4'"):
        quant.check_mode("int4")


def test_int8_engine_is_the_dequantized_model_and_close_to_fp32(stories):
    params, cfg = stories
    fp32 = Engine(params, cfg, slots=3, max_len=128)
    int8 = Engine(params, cfg, slots=3, max_len=128, quantize="int8")
    deq = Engine(_dequantized(params, cfg), cfg, slots=3, max_len=128)
    layer = int8.weights["layers"][0]
    assert layer["attn"]["k"]["kernel"]["int8"].dtype == np.int8
    assert layer["attn"]["k"]["kernel"]["scale"].shape == (cfg.kv_heads * cfg.dim_per_head,)
    assert layer["mlp"]["down"]["kernel"]["scale"].shape == (cfg.hidden_size,)
    assert int8.weights["embed"]["scale"].shape == (cfg.padded_vocab,) and int8.weights["head"] is None
    assert quant.weight_bytes(int8.weights) < 0.3 * quant.weight_bytes(fp32.weights)
    for p in PROMPTS:
        a, b, d = _last_logits(fp32, p), _last_logits(int8, p), _last_logits(deq, p)
        np.testing.assert_allclose(b, d, atol=2e-5, rtol=0)  # the scale after the dot is exact algebra
        assert np.abs(a - b).max() <= MAX_ABS and np.abs(a - b).mean() <= MEAN_ABS
    reqs = [Request(p, GREEDY_TOKENS, ignore_eos=True) for p in PROMPTS]
    assert [o[0].tokens for o in int8.run(reqs)] == [o[0].tokens for o in fp32.run(reqs)]


def test_int8_on_a_mesh_equals_one_device(stories):
    params, cfg = stories
    reqs = [Request(p, 12, ignore_eos=True) for p in PROMPTS] + [Request(PROMPTS[1], 12, temperature=1.0, seed=5)]
    one = Engine(params, cfg, slots=4, max_len=128, quantize="int8")
    mesh = build_mesh("dp2,mp2", cfg, devices=jax.devices()[:4])
    eng = Engine(params, cfg, slots=4, max_len=128, quantize="int8", mesh=mesh)
    assert [o[0].tokens for o in eng.run(reqs)] == [o[0].tokens for o in one.run(reqs)]
    q = eng.weights["layers"][0]["attn"]["q"]["kernel"]
    assert tuple(q["int8"].sharding.spec) == (None, "mp") and tuple(q["scale"].sharding.spec) == ("mp",)
    o = eng.weights["layers"][0]["attn"]["o"]["kernel"]
    assert tuple(o["int8"].sharding.spec) == ("mp", None) and tuple(o["scale"].sharding.spec) in ((), (None,))
    assert tuple(eng.weights["embed"]["scale"].sharding.spec) == ("mp",)  # with the vocabulary rows
    np.testing.assert_allclose(_last_logits(eng, PROMPTS[2]), _last_logits(one, PROMPTS[2]), atol=1e-4)


def test_cli_flag(tmp_path, capsys):
    from camel_jax.generate import main

    llama2c.import_llama2c(STORIES_BIN, TOK512_BIN, str(tmp_path / "ckpt"))
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "x", "--quantize", "int4"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--quantize" in err and "'int4'" in err
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--prompt", "Once upon a time, there was a little girl",
                 "--max_new_tokens", "6", "--quantize", "int8"]) == 0
    assert capsys.readouterr().out == " named Lily. She loved\n"  # fp32's answer (tests/test_generate.py)
