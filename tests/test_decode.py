"""infer.decode: the prefill equals the Flax model, grouped attention equals the repeated-kv one, the step updates the
donated cache in place, and writes past the cache or outside the slots are dropped and reported, never clamped."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.infer import decode
from camel_jax.model.attention import dot_attention
from camel_jax.model.config import get_preset
from camel_jax.model.llama import Llama, init_cache, init_params

CFG = get_preset("tiny-gqa", dtype="float32")


@pytest.fixture(scope="module")
def weights():
    params = jax.jit(lambda k: init_params(CFG, k))(jax.random.PRNGKey(0))
    return params, decode.serving_weights(params, CFG)


def test_prefill_equals_the_model(weights):
    params, w = weights
    prompt = [1, 17, 42, 99, 3, 8, 77]
    tokens = np.zeros((1, 16), np.int32)
    tokens[0, :7] = prompt
    logits, kv = jax.jit(functools.partial(decode.prefill, cfg=CFG))(w, tokens, np.int32(7))
    ref, cache = Llama(CFG, trim_logits=False).apply({"params": params}, jnp.asarray([prompt]),
                                                     cache=init_cache(CFG, 1, 7), cache_index=0)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref[0, -1]), atol=2e-5, rtol=1e-5)
    assert logits.shape == (CFG.padded_vocab,)  # only the last position's logits
    for layer, (k, v) in enumerate(kv):
        np.testing.assert_allclose(np.asarray(k[:, :7]), np.asarray(cache["k"][layer, 0]).transpose(1, 0, 2),
                                   atol=1e-5)
        np.testing.assert_allclose(np.asarray(v[:, :7]), np.asarray(cache["v"][layer, 0]).transpose(1, 0, 2),
                                   atol=1e-5)


def test_grouped_attention_equals_repeated_kv():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(3, 8, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(3, 2, 24, 16)), jnp.float32) for _ in range(2))
    lengths = jnp.asarray([1, 10, 24])
    valid = jnp.arange(24)[None] < lengths[:, None]
    ref = dot_attention(q[:, None], k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), valid[:, None, None, :])[:, 0]
    out = decode.grouped_attention(q, k.transpose(1, 0, 2, 3), v.transpose(1, 0, 2, 3), valid)  # the cache's [KV, B]
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)
    kt = decode.grouped_attention(q, k.transpose(1, 0, 3, 2), v.transpose(1, 0, 2, 3), valid, kt=True)  # k [hd, S]
    np.testing.assert_allclose(np.asarray(kt), np.asarray(ref), atol=1e-6)


def _whole(blocks, name="v"):
    """One layer's cache blocks joined along the sequence, as numpy [KV, B, S, hd] (the keys' kt layout undone)."""
    if name == "k":
        return np.concatenate([np.asarray(b) for b in blocks], axis=3).swapaxes(2, 3)
    return np.concatenate([np.asarray(b) for b in blocks], axis=2)


def test_cache_blocks_double_up_to_the_largest_and_cover_the_cache():
    assert decode.cache_blocks(1664) == (128, 128, 256, 512, 640)
    assert decode.cache_blocks(16, first=16) == (16,) and decode.cache_blocks(100) == (100,)
    assert decode.cache_blocks(4096) == (128, 128, 256, 512, 1024, 1024, 1024)
    assert decode.cache_blocks(4096, paged=True) == (4096,)
    assert [decode.window_for((128, 128, 256, 640), n) for n in (1, 128, 129, 257, 513, 1152)] == \
        [128, 128, 256, 512, 1152, 1152]
    with pytest.raises(ValueError, match="add up"):
        decode.empty_cache(CFG, 2, 64, blocks=(16, 16))


def test_a_step_over_blocks_equals_a_step_over_one_buffer(weights):
    """The same rows (at positions in different blocks, one past the first window) stepped over a cache of one
    block and over blocks 16/16/32: the same tokens and logits-derived state, and the same cache contents."""
    _, w = weights
    rng = np.random.default_rng(3)
    one = decode.empty_cache(CFG, 3, 64, blocks=(64,))
    one = [{n: [jnp.asarray(rng.normal(size=c[n][0].shape), jnp.float32)] for n in c} for c in one]
    split = [{n: [x[..., a:b] if n == "k" else x[:, :, a:b] for a, b in ((0, 16), (16, 32), (32, 64))]
              for n, (x,) in c.items()} for c in one]  # k [KV, B, hd, S]: split along its last dim
    state = _state(3, [3, 20, 40], [True, True, True])
    step = jax.jit(functools.partial(decode.decode_step, cfg=CFG), static_argnames="window")
    c1, s1, t1, *_ = step(w, one, state, window=64)
    c2, s2, t2, *_ = step(w, split, state, window=decode.window_for((16, 16, 32), 41))
    assert np.asarray(t1).tolist() == np.asarray(t2).tolist()
    for a, b in zip(c1, c2):
        for n in ("k", "v"):
            np.testing.assert_allclose(_whole(a[n], n), _whole(b[n], n), atol=1e-6)


def _state(slots, lengths, active):
    state = decode.empty_state(slots, 2, 4)
    return {**state, "lengths": jnp.asarray(lengths, jnp.int32), "active": jnp.asarray(active),
            "max_new": jnp.full(slots, 100, jnp.int32)}


def test_a_write_past_the_cache_is_dropped_and_reported(weights):
    _, w = weights
    cache = [{k: [jnp.ones_like(b) for b in x] for k, x in c.items()} for c in decode.empty_cache(CFG, 2, 16,
                                                                                                  blocks=(4, 4, 8))]
    before = [{k: _whole(x, k) for k, x in c.items()} for c in cache]
    step = jax.jit(functools.partial(decode.decode_step, cfg=CFG), static_argnames="window")
    cache, state, _, done, overflow = step(w, cache, _state(2, [16, 5], [True, True]), window=16)
    assert np.asarray(overflow).tolist() == [True, False]
    assert np.asarray(state["lengths"]).tolist() == [16, 6] and np.asarray(state["active"]).tolist() == [False, True]
    for c, b in zip(cache, before):
        np.testing.assert_array_equal(_whole(c["k"], "k")[:, 0], b["k"][:, 0])  # row 0 untouched: the last slot too
        assert not np.array_equal(_whole(c["k"], "k")[:, 1, 5], b["k"][:, 1, 5])  # row 1 written at its position
        np.testing.assert_array_equal(_whole(c["k"], "k")[:, 1, :5], b["k"][:, 1, :5])  # in the second block only
        np.testing.assert_array_equal(_whole(c["k"], "k")[:, 1, 6:], b["k"][:, 1, 6:])


def test_an_insert_outside_the_slots_is_dropped(weights):
    _, w = weights
    tokens = np.zeros((1, 16), np.int32)
    tokens[0, :3] = [1, 5, 9]
    logits, kv = jax.jit(functools.partial(decode.prefill, cfg=CFG))(w, tokens, np.int32(3))
    request = {"max_new": np.int32(4), "eos": np.int32(-1), "temperature": np.float32(0), "top_k": np.int32(0),
               "top_p": np.float32(1), "keys": np.zeros(2, np.uint32), "stops": np.full((2, 4), -1, np.int32)}
    cache, state = decode.empty_cache(CFG, 2, 32), decode.empty_state(2, 2, 4)
    ins = jax.jit(functools.partial(decode.insert, cfg=CFG))
    c2, s2, tok, _ = ins(cache, state, np.int32(2), kv, np.int32(3), logits, request)
    for a, b in zip(jax.tree.leaves((c2, s2)), jax.tree.leaves((cache, state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c3, s3, tok3, _ = ins(cache, state, np.int32(1), kv, np.int32(3), logits, request)
    assert np.asarray(s3["active"]).tolist() == [False, True] and int(s3["lengths"][1]) == 3
    assert int(tok3) == int(jnp.argmax(logits)) and int(s3["tokens"][1]) == int(tok3)
    np.testing.assert_array_equal(_whole(c3[0]["k"], "k")[:, 1, :16], np.asarray(kv[0][0]))


def test_the_step_updates_the_donated_cache_in_place(weights):
    _, w = weights
    cache = decode.empty_cache(CFG, 4, 128, blocks=(16, 16, 32, 64))  # blocks past the window pass through
    state = _state(4, [5, 0, 9, 2], [True, False, True, True])
    step = jax.jit(functools.partial(decode.decode_step, cfg=CFG), static_argnames="window", donate_argnums=(1, 2))
    stats = step.lower(w, cache, state, window=16).compile().memory_analysis()
    cache_bytes = sum(x.nbytes for x in jax.tree.leaves(cache))
    assert stats.alias_size_in_bytes >= cache_bytes  # every cache buffer is an output aliased to its input
    assert stats.temp_size_in_bytes < cache_bytes / 4  # and no copy of it is made
    new_cache, *_ = step(w, cache, state, window=16)
    assert all(x.is_deleted() for x in jax.tree.leaves(cache))
    assert [x.shape for x in new_cache[0]["k"]] == [(CFG.kv_heads, 4, CFG.dim_per_head, n) for n in (16, 16, 32, 64)]
    assert [x.shape for x in new_cache[0]["v"]] == [(CFG.kv_heads, 4, n, CFG.dim_per_head) for n in (16, 16, 32, 64)]


@pytest.mark.parametrize("t, length, chunk", [(40, 33, 16), (48, 48, 16), (40, 5, 64)])
def test_chunked_causal_attention_equals_the_masked_dense_one(t, length, chunk):
    kq, kk, kv_ = jax.random.split(jax.random.PRNGKey(1), 3)
    q = jax.random.normal(kq, (1, t, 4, 8))
    k, v = jax.random.normal(kk, (1, t, 2, 8)), jax.random.normal(kv_, (1, t, 2, 8))
    slots = jnp.arange(t)[None]
    seg = (slots < length).astype(jnp.int32)
    from camel_jax.model.attention import attention_mask

    ref = dot_attention(q, k, v, attention_mask(slots, seg, slots, seg))
    got = decode.causal_chunked_attention(q, k, v, jnp.int32(length), chunk)
    np.testing.assert_allclose(np.asarray(got[:, :length]), np.asarray(ref[:, :length]), atol=1e-6)


def test_a_prefill_past_one_chunk_equals_the_model(weights, monkeypatch):
    params, w = weights
    monkeypatch.setattr(decode, "PREFILL_CHUNK", 16)  # 3 chunks over this 40-slot bucket
    prompt = np.random.default_rng(0).integers(2, 250, 37).tolist()
    tokens = np.zeros((1, 40), np.int32)
    tokens[0, :37] = prompt
    cfg = CFG.replace(attention="block_sparse")
    logits, _ = jax.jit(functools.partial(decode.prefill, cfg=cfg))(decode.serving_weights(params, cfg), tokens,
                                                                    np.int32(37))
    ref, _ = Llama(CFG, trim_logits=False).apply({"params": params}, jnp.asarray([prompt]),
                                                 cache=init_cache(CFG, 1, 37), cache_index=0)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref[0, -1]), atol=2e-5, rtol=1e-5)
