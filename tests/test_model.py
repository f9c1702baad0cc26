"""Model behaviour that needs no reference implementation: packing, padding, caching, remat and dtypes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.model.llama import Llama, init_cache, init_params, positions_from_mask
from camel_jax.model.config import get_preset
from hlo_util import dots

CFG = get_preset("tiny-gqa", dtype="float32")


@pytest.fixture(scope="module")
def params():
    return init_params(CFG, jax.random.PRNGKey(0))


def fwd(params, tokens, **kw):
    logits, _ = Llama(CFG).apply({"params": params}, jnp.asarray(tokens), **kw)
    return np.asarray(logits)


def rand_tokens(n, seed):
    return np.random.RandomState(seed).randint(3, CFG.vocab_size, n).astype(np.int32)


def test_packed_row_equals_segments_run_alone(params):
    a, b, c = rand_tokens(5, 1), rand_tokens(7, 2), rand_tokens(3, 3)
    row = np.concatenate([a, b, c, np.zeros(1, np.int32)])[None]
    seg = np.array([[1] * 5 + [2] * 7 + [3] * 3 + [0]])
    pos = np.array([list(range(5)) + list(range(7)) + list(range(3)) + [0]])
    packed = fwd(params, row, positions=pos, segment_ids=seg)[0]
    for piece, lo in ((a, 0), (b, 5), (c, 12)):
        alone = fwd(params, piece[None])[0]
        np.testing.assert_allclose(packed[lo:lo + len(piece)], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_real_tokens(params, side):
    seq = rand_tokens(9, 4)
    pad = np.zeros(4, np.int32)
    row = np.concatenate([pad, seq] if side == "left" else [seq, pad])[None]
    mask = (np.arange(13) >= 4) if side == "left" else (np.arange(13) < 9)
    mask = mask.astype(np.int32)[None]
    out = fwd(params, row, positions=np.asarray(positions_from_mask(jnp.asarray(mask))), segment_ids=mask)[0]
    assert np.isfinite(out).all()
    real = out[4:] if side == "left" else out[:9]
    np.testing.assert_allclose(real, fwd(params, seq[None])[0], atol=1e-5, rtol=0)


def test_cached_decoding_matches_full_forward(params):
    tokens = rand_tokens(12, 5)[None]
    full = fwd(params, tokens)[0]
    model = Llama(CFG)
    cache = init_cache(CFG, 1, 16, dtype="float32")
    logits, cache = model.apply({"params": params}, jnp.asarray(tokens[:, :8]), cache=cache, cache_index=0)
    steps = [np.asarray(logits)[0]]
    for i in range(8, 12):
        logits, cache = model.apply({"params": params}, jnp.asarray(tokens[:, i:i + 1]), cache=cache, cache_index=i)
        steps.append(np.asarray(logits)[0])
    np.testing.assert_allclose(np.concatenate(steps), full, atol=1e-5, rtol=0)


def test_cached_decoding_with_left_padded_prompt(params):
    seq = rand_tokens(6, 6)
    row = np.concatenate([np.zeros(3, np.int32), seq])[None]
    mask = (np.arange(9) >= 3).astype(np.int32)[None]
    pos = np.asarray(positions_from_mask(jnp.asarray(mask)))
    cache = init_cache(CFG, 1, 12, dtype="float32")
    logits, cache = Llama(CFG).apply({"params": params}, jnp.asarray(row), positions=pos, segment_ids=mask,
                                     cache=cache, cache_index=0)
    nxt = np.array([[7]], np.int32)
    step, _ = Llama(CFG).apply({"params": params}, jnp.asarray(nxt), positions=np.array([[6]]),
                               segment_ids=np.ones((1, 1), np.int32), cache=cache, cache_index=9)
    alone = fwd(params, np.concatenate([seq, nxt[0]])[None])[0]
    np.testing.assert_allclose(np.asarray(step)[0, 0], alone[-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["block_sparse", "splash_interpret"])
def test_long_prefill_takes_the_row_path_and_matches_attention_over_the_cache(params, attention):
    """A 300-slot left-padded prompt prefilled at slot 0 attends within itself through the training path; logits
    and the cache it leaves equal plain attention over the whole cache (`dot`), and so does the next decode step."""
    seq = rand_tokens(260, 8)
    row = np.concatenate([np.zeros(40, np.int32), seq])[None]
    mask = (np.arange(300) >= 40).astype(np.int32)[None]
    pos = np.asarray(positions_from_mask(jnp.asarray(mask)))

    def run(cfg):
        model = Llama(cfg)
        cache = init_cache(cfg, 1, 320, dtype="float32")
        first, cache = jax.jit(lambda p, c: model.apply({"params": p}, jnp.asarray(row), positions=pos,
                                                        segment_ids=mask, cache=c, cache_index=0))(params, cache)
        step, _ = model.apply({"params": params}, jnp.asarray([[7]]), positions=np.array([[260]]),
                              segment_ids=np.ones((1, 1), np.int32), cache=cache, cache_index=300)
        return np.asarray(first)[0, 40:], np.asarray(step)[0, 0], cache

    ref_first, ref_step, ref_cache = run(CFG.replace(attention="dot"))
    first, step, cache = run(CFG.replace(attention=attention))
    np.testing.assert_allclose(first, ref_first, atol=1e-5, rtol=0)
    np.testing.assert_allclose(step, ref_step, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.asarray(cache["seg"]), np.asarray(ref_cache["seg"]))
    for name in ("k", "v"):  # [L, B, S, kv, hd]; padding slots are never attended (their values may differ)
        np.testing.assert_allclose(np.asarray(cache[name])[:, :, 40:300], np.asarray(ref_cache[name])[:, :, 40:300],
                                   atol=1e-5, rtol=0)
    np.testing.assert_allclose(first, fwd(params, seq[None])[0], atol=1e-5, rtol=0)  # and the prompt alone


@pytest.mark.parametrize("length", [16, 384])  # 384: three 128-slot blocks, the block-sparse attention path
@pytest.mark.parametrize("remat, unroll", [("full", 1), ("save_dots", 1), ("none", 2), ("save_dots", 2)])
def test_remat_and_unroll_change_speed_not_results(params, remat, unroll, length):
    tokens = jnp.asarray(rand_tokens(length, 7)[None])
    seg = jnp.asarray((np.arange(length) >= length // 3).astype(np.int32)[None] + 1)  # two packed segments

    def loss(p, cfg):
        logits, _ = Llama(cfg).apply({"params": p}, tokens, segment_ids=seg)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    ref = jax.grad(loss)(params, CFG)
    got = jax.grad(loss)(params, CFG.replace(remat=remat, scan_unroll=unroll).validate())
    for x, y in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, rtol=1e-6)


def test_param_and_compute_dtypes_are_separate():
    cfg = CFG.replace(param_dtype="float32", dtype="bfloat16")
    p = init_params(cfg, jax.random.PRNGKey(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
    logits, _ = Llama(cfg).apply({"params": p}, jnp.zeros((1, 4), jnp.int32))
    assert logits.dtype == jnp.float32  # loss is always computed over fp32 logits
    # Every matmul multiplies bf16 operands (q, k, v, o, gate, up, down, attention's two contractions, lm_head), and
    # in the fp32 config every one multiplies fp32: the check follows the config. Pre-optimization HLO: XLA's CPU
    # backend later upcasts bf16 dots to f32 itself (it has no bf16 matmul); TPU keeps them (test_step.py).
    for c, want in ((cfg, "bf16"), (cfg.replace(dtype="float32"), "f32")):
        fwd = jax.jit(lambda p, t: Llama(c).apply({"params": p}, t)[0])
        found = dots(fwd.lower(p, jnp.zeros((1, 4), jnp.int32)).as_text(dialect="hlo"))
        assert len(found) == 10 and all(lhs == rhs == want for _, lhs, rhs, _ in found), found
