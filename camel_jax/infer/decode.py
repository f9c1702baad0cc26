"""The engine's device functions: prefill one prompt, insert it into a slot, advance every slot by one token.

Why not the Flax module's cached path: there the cache goes through the layer scan as input and output, so every
decode step allocates and copies the whole [L, B, S, kv, hd] cache, one scalar index serves all rows, and grouped
kv heads are repeated to [B, S, H, hd]. Here the weights are split per layer once (`serving_weights`, in the
compute dtype: no per-step casts, no per-step slicing of a stacked weight) and so is the cache: per layer, a
few [KV, B, size, hd] blocks along the sequence (`cache_blocks`; heads and rows leading: the attention's batched
dots read them without a transpose, 6x faster than [B, S, KV, hd] on CPU; on TPU one block, the paged-attention
kernel's page pool, see infer/paged.py), donated to the jitted step, each written by one scatter at each row's own
position (in place). A layer is the same arithmetic as `model.layers.DecoderLayer` (tests check the tokens against
the model), with grouped attention over [B, KV, group] — no repeat — over only the blocks the caller's `window`
reaches (a few static sizes covering the longest row present), so cost follows the tokens present. paged (the
engine's choice on TPU): the Pallas paged-attention kernel instead, each row reading only its own slots.

Bounds: a write at a position past the cache, or into a row that does not exist, is dropped (scatter mode "drop")
and reported in `overflow`; nothing is clamped onto the last slot. The engine refuses such requests before.

Per-row state (`empty_state`), all [B] unless noted: tokens (the next input token), lengths (cache slots filled
= that token's position), active, count (tokens generated), max_new, eos (-1: none), temperature, top_k, top_p,
keys [B, 2] uint32, history [B, W] (last generated tokens), stops [B, N, W] (sampling.stop_hit).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from camel_jax.model import partition
from camel_jax.model.attention import NEG, attention_mask, dot_attention
from camel_jax.model.config import LlamaConfig
from camel_jax.model.cudnn import cudnn_attention
from camel_jax.model.layers import apply_rotary, rotary_tables
from camel_jax.model.llama import default_platform, param_logical_specs
from camel_jax.model.partition import BTD, BTHD, BTKD, CACHE, SERVE_RULES, constrain
from camel_jax.model.splash import splash_attention
from camel_jax.model.vocab import mask_padded_logits
from camel_jax.infer import quantize as quant
from camel_jax.infer.paged import paged_decode_attention
from camel_jax.infer.sampling import sample, stop_hit


def _place(x: Any, spec: P, mesh: jax.sharding.Mesh | None, dtype: Any) -> jax.Array:
    x = jnp.asarray(x, dtype)
    if mesh is None:
        return x
    return jax.device_put(x, NamedSharding(mesh, partition.to_mesh_axes(tuple(spec), SERVE_RULES, mesh.axis_names)))


def _weight(x: Any, spec: P, mesh: jax.sharding.Mesh | None, dt: Any, quantize: str | None, axis: int) -> Any:
    """A 2-D weight placed as served: in `dt`, or {"int8", "scale"} with the scale on output axis `axis`."""
    if quantize is None:
        return _place(x, spec, mesh, dt)
    q, scale = quant.quantize_int8(x, axis)
    return {"int8": _place(q, spec, mesh, jnp.int8), "scale": _place(scale, P(tuple(spec)[axis]), mesh, jnp.float32)}


def serving_weights(params: dict, cfg: LlamaConfig, mesh: jax.sharding.Mesh | None = None,
                    quantize: str | None = None) -> dict:
    """The model's parameter tree as the engine serves it: {"embed", "head" (None when tied), "final_norm",
    "layers": one dict per layer}, in the compute dtype, placed by SERVE_RULES on `mesh`. quantize="int8": every
    matmul kernel and the embedding int8 with a scale per output channel (infer/quantize.py), norms unchanged."""
    specs, dt, mode = param_logical_specs(cfg), jnp.dtype(cfg.dtype), quant.check_mode(quantize)

    def leaf(x, s):
        s = P(*tuple(s)[1:])
        return _weight(x, s, mesh, dt, mode, 1) if len(s) == 2 else _place(x, s, mesh, dt)

    layers = [jax.tree.map(lambda x, s, i=i: leaf(x[i], s), params["layers"], specs["layers"])
              for i in range(cfg.num_layers)]
    head = None if cfg.tie_embeddings else _weight(params["lm_head"]["kernel"], specs["lm_head"]["kernel"], mesh,
                                                   dt, mode, 1)
    return {"embed": _weight(params["embed"]["embedding"], specs["embed"]["embedding"], mesh, dt, mode, 0),
            "head": head, "final_norm": _place(params["final_norm"]["scale"], specs["final_norm"]["scale"], mesh, dt),
            "layers": layers}


MAX_BLOCK = 1024  # the largest cache block: windows past it grow by this much, not by doubling
# `kt`: the keys transposed in the cache, [KV, B, hd, S] (the dense decode path): the score dot q [g, hd] x k [hd, S]
# then reads k as a plain matmul's right operand, where from [S, hd] XLA:CPU transposed k first (30 layers of
# SmolLM2's decode attention alone: 13.7 -> 10.5 ms at 8 rows x 384 slots, 14.3 -> 9.6 ms at 2 x 2048, 31.6 ->
# 18.8 ms at 8 x 1024). The paged kernel keeps its [S, hd] pages (kt False).


def cache_blocks(max_len: int, first: int = 128, paged: bool = False) -> tuple[int, ...]:
    """The sizes of a row's cache blocks: `first`, then each as long as all before it (edges first, 2*first,
    4*first, ...) up to MAX_BLOCK, the last cut at max_len; one block of max_len for the paged kernel (its page
    pool). Why blocks: the attended window is whole blocks, so no step slices a window out of a longer buffer
    (XLA:CPU copied the sliced k/v before its dots: at window 1536 of 1664 slots the attention took 330 ms over
    30 layers where separate buffers took 65 ms), and doubling edges keep the windows, and so the compiled steps,
    few (2x the tokens present at worst, MAX_BLOCK more past it)."""
    if paged:
        return (max_len,)
    sizes, edge = [], 0
    while edge < max_len:
        size = min(max_len - edge, first if edge < first else min(edge, MAX_BLOCK))
        sizes.append(size)
        edge += size
    return tuple(sizes)


def blocks_for(blocks: Sequence[int], n: int) -> int:
    """How many leading blocks hold n slots (n <= sum(blocks)): the blocks a step attends."""
    return int(np.searchsorted(np.cumsum(blocks), n)) + 1


def window_for(blocks: Sequence[int], n: int) -> int:
    """The smallest block edge holding n slots (n <= sum(blocks)): the window a step attends."""
    return int(np.cumsum(blocks)[blocks_for(blocks, n) - 1])


def empty_cache(cfg: LlamaConfig, slots: int, max_len: int, mesh: jax.sharding.Mesh | None = None,
                blocks: Sequence[int] | None = None, kt: bool = True) -> list:
    """Per layer {"k": [...], "v": [...]}: one [KV, slots, size, hd] buffer per block of `blocks` (default
    cache_blocks(max_len)), each split by SERVE_RULES' cache names; with `kt` (above) the keys [KV, slots, hd,
    size]. The split names the same dims either way (cache_seq and head_dim are never split)."""
    blocks = cache_blocks(max_len) if blocks is None else tuple(blocks)
    if sum(blocks) != max_len:
        raise ValueError(f"cache blocks {blocks} do not add up to max_len {max_len}")

    def buffers(keys: bool):
        return [_place(np.zeros((cfg.kv_heads, slots) + ((cfg.dim_per_head, n) if keys and kt else
                                                         (n, cfg.dim_per_head))), P(*CACHE), mesh, cfg.dtype)
                for n in blocks]
    return [{"k": buffers(True), "v": buffers(False)} for _ in range(cfg.num_layers)]


def empty_state(slots: int, max_stops: int, stop_len: int, mesh: jax.sharding.Mesh | None = None) -> dict:
    zi = np.zeros(slots, np.int32)
    state = {"tokens": zi, "lengths": zi, "active": np.zeros(slots, bool), "count": zi, "max_new": zi,
             "eos": zi - 1, "temperature": np.zeros(slots, np.float32), "top_k": zi,
             "top_p": np.ones(slots, np.float32), "keys": np.zeros((slots, 2), np.uint32),
             "history": np.full((slots, stop_len), -2, np.int32),
             "stops": np.full((slots, max_stops, stop_len), -1, np.int32)}
    return {k: _place(v, P("cache_batch"), mesh, v.dtype) for k, v in state.items()}


def _rows_spec(x) -> tuple:  # a state array's: rows as the cache's
    return ("cache_batch",) + (None,) * (x.ndim - 1)


def take_rows(cache: list, state: dict, rows: jax.Array):
    """The cache and state of slots `rows` only, in that order (the engine's compaction: once the queue is empty
    and few rows are left, the step runs on a batch of those alone; each row's values are unchanged)."""
    return jax.tree.map(lambda x: constrain(jnp.take(x, rows, axis=1), CACHE), cache), \
        jax.tree.map(lambda x: constrain(x[rows], _rows_spec(x)), state)


def pad_rows(cache: list, state: dict, empty: dict):
    """The cache and state grown back to the rows of `empty` (an empty_state): the current rows first, the new ones
    free (their cache zero, their state empty's)."""
    n = jax.tree.leaves(empty)[0].shape[0]
    cache = jax.tree.map(lambda x: constrain(jnp.zeros(x.shape[:1] + (n,) + x.shape[2:], x.dtype)
                                             .at[:, :x.shape[1]].set(x), CACHE), cache)
    return cache, jax.tree.map(lambda e, x: constrain(e.at[:x.shape[0]].set(x), _rows_spec(e)), empty, state)


def _rms(x, scale, cfg: LlamaConfig):
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + cfg.rms_norm_eps)
    return xf.astype(cfg.dtype) * scale


def _block(w: dict, x, cos, sin, attend, cfg: LlamaConfig):
    """One decoder layer (as `DecoderLayer`); attend(q, k, v) -> (out [B, T, H, hd], whatever it keeps)."""
    dt, (b, t, _) = jnp.dtype(cfg.dtype), x.shape
    h, kvh, hd = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
    a = w["attn"]
    y = _rms(x, w["attn_norm"]["scale"], cfg)
    q = constrain(quant.project(y, a["q"]["kernel"], dt).reshape(b, t, h, hd), BTHD)
    k = constrain(quant.project(y, a["k"]["kernel"], dt).reshape(b, t, kvh, hd), BTKD)
    v = constrain(quant.project(y, a["v"]["kernel"], dt).reshape(b, t, kvh, hd), BTKD)
    out, kept = attend(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v)
    x = constrain(x + quant.project(constrain(out, BTHD).reshape(b, t, h * hd), a["o"]["kernel"], dt), BTD)
    m = w["mlp"]
    y = _rms(x, w["mlp_norm"]["scale"], cfg)
    hidden = constrain(jax.nn.silu(quant.project(y, m["gate"]["kernel"], dt)) *
                       quant.project(y, m["up"]["kernel"], dt), ("batch", "seq", "act_mlp"))
    return constrain(x + quant.project(hidden, m["down"]["kernel"], dt), BTD), kept


def _logits(weights: dict, x, cfg: LlamaConfig):
    """fp32 logits [B, padded_vocab] of final-normed states x [B, D], padded columns masked."""
    if weights["head"] is None:
        logits = quant.project_rows(x, weights["embed"], jnp.dtype(cfg.dtype))
    else:
        logits = quant.project(x, weights["head"], jnp.dtype(cfg.dtype))
    logits = constrain(logits.astype(jnp.float32), ("batch", "act_vocab"))
    return mask_padded_logits(logits, cfg.vocab_size)


def _embed(weights: dict, tokens, cfg: LlamaConfig):
    table = jax.tree.map(lambda t: constrain(t, ("act_vocab", None)[:t.ndim]), weights["embed"])
    return constrain(quant.lookup(table, tokens, jnp.dtype(cfg.dtype)), BTD)


PREFILL_CHUNK = 256  # queries per chunk of `causal_chunked_attention` (512 for prompt buckets of 2048 and more)


def _grouped_heads_first(q, k, v, mask):
    """q [B, Tq, H, hd] over k/v [B, Tk, KV, hd] where mask [Tq, Tk]: each kv head's query group flattened into one
    [group * Tq, hd] operand, heads leading, so both dots are plain batched matmuls over B * KV; softmax in fp32.
    On CPU this ran the prefill of a 1024-token SmolLM2 prompt in 3.8 s of CPU time against 4.8 s for
    `dot_attention`'s repeated kv heads (heads third)."""
    b, tq, h, hd = q.shape
    g = h // k.shape[2]
    qh = q.transpose(0, 2, 1, 3).reshape(b, k.shape[2], g * tq, hd)  # head h = kv head h // g, as _repeat_kv
    s = jnp.einsum("bkqd,bksd->bkqs", qh, k.transpose(0, 2, 1, 3), preferred_element_type=jnp.float32)
    s = jnp.where(jnp.tile(mask, (g, 1))[None, None], s * (hd ** -0.5), NEG)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bkqs,bksd->bkqd", p, v.transpose(0, 2, 1, 3)).reshape(b, h, tq, hd).transpose(0, 2, 1, 3)


def causal_chunked_attention(q, k, v, length, chunk: int):
    """One right-padded causal prompt's self-attention: q [B, T, H, hd], k/v [B, T, KV, hd], `length` real slots.
    The queries in chunks of `chunk`, each attending only the keys up to its own end (plain dots, no switch): a
    few fused einsums per layer, where the block-sparse training path unrolled a `lax.switch` per 128-query block
    (its branch sizes cover packed segments a lone prompt never has) and took ~47 s to compile at T=1024 on CPU
    (~12 s now, under the same load)."""
    t = q.shape[1]
    slots = jnp.arange(t, dtype=jnp.int32)
    outs = []
    for lo in range(0, t, chunk):
        hi = min(t, lo + chunk)
        mask = (slots[None, :hi] <= slots[lo:hi, None]) & (slots[None, :hi] < length)
        outs.append(_grouped_heads_first(q[:, lo:hi], k[:, :hi], v[:, :hi], mask))
    return jnp.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]


def prefill(weights: dict, tokens: jax.Array, length: jax.Array, *, cfg: LlamaConfig):
    """One right-padded prompt tokens [1, T] with `length` real tokens -> (fp32 logits [padded_vocab] at its last
    token, per-layer keys and values [KV, T, hd]). The prompt attends within itself through the training path
    (splash on TPU, cuDNN on NVIDIA GPUs, "dot" plain) but for "block_sparse" (CPU's default), which becomes
    `causal_chunked_attention`: a lone causal prompt needs none of its segment machinery, only its compile time."""
    t = tokens.shape[1]
    slots = jnp.arange(t, dtype=jnp.int32)[None]
    seg = (slots < length).astype(jnp.int32)
    mask = attention_mask(slots, seg, slots, seg)
    impl = cfg.for_platform(default_platform()).attention if cfg.attention == "auto" else cfg.attention

    def attend(q, k, v):
        if impl == "block_sparse":
            # 2,048-slot SmolLM2 prefill, 30 layers, CPU: 256-query chunks traced in 2.6 s + compiled in 7.1 s and
            # ran in 6.4 s, 512-query chunks 1.3 + 3.1 s and 6.2 s; at 1,024 slots 256 ran faster (2.5 s vs 2.75 s)
            out = causal_chunked_attention(q, k, v, length, PREFILL_CHUNK if t < 2048 else 2 * PREFILL_CHUNK)
        elif impl in ("splash", "splash_interpret"):
            out = splash_attention(q, k, v, seg, interpret=impl == "splash_interpret")
        elif impl in ("cudnn", "cudnn_xla"):
            out = cudnn_attention(q, k, v, mask, implementation="cudnn" if impl == "cudnn" else "xla")
        else:
            out = dot_attention(q, k, v, mask)
        return out, (k[0].transpose(1, 0, 2), v[0].transpose(1, 0, 2))

    x = _embed(weights, tokens, cfg)
    cos, sin = rotary_tables(slots, cfg.dim_per_head, cfg.rope_theta)
    kv = []
    for w in weights["layers"]:
        x, kept = _block(w, x, cos, sin, attend, cfg)
        kv.append(kept)
    last = jax.lax.dynamic_index_in_dim(x[0], length - 1, keepdims=True)
    return _logits(weights, _rms(last, weights["final_norm"], cfg), cfg)[0], kv


def _finish(state: dict, live, tok):
    """The bookkeeping after choosing `tok` for the `live` rows: history, count, and which rows are done."""
    hist = jnp.where(live[:, None], jnp.concatenate([state["history"][:, 1:], tok[:, None]], axis=1),
                     state["history"])
    count = state["count"] + live.astype(jnp.int32)
    done = live & ((tok == state["eos"]) | (count >= state["max_new"]) | stop_hit(hist, state["stops"]))
    return {**state, "history": hist, "count": count, "tokens": jnp.where(live, tok, state["tokens"])}, done


def insert(cache: list, state: dict, row: jax.Array, kv: list, length: jax.Array, logits: jax.Array,
           request: dict, *, cfg: LlamaConfig, kt: bool = True):
    """Put a prefilled prompt into slot `row` and choose its first token -> (cache, state, token, done).
    request: this row's max_new, eos, temperature, top_k, top_p, keys [2], stops [N, W]. A row outside the slots
    is dropped (never clamped onto another): the engine checks it first."""
    t = kv[0][0].shape[1]

    def put(blocks, x, transposed):  # the prompt's [KV, t, hd] over the blocks it reaches
        out, start = [], 0
        for buf in blocks:
            size = buf.shape[3] if transposed else buf.shape[2]
            n = min(size, t - start)
            part = x[:, start:start + n].astype(buf.dtype)
            if n > 0:
                buf = (buf.at[:, row, :, :n].set(part.swapaxes(1, 2), mode="drop") if transposed else
                       buf.at[:, row, :n].set(part, mode="drop"))
            out.append(constrain(buf, CACHE) if n > 0 else buf)
            start += size
        return out
    cache = [{"k": put(c["k"], k, kt), "v": put(c["v"], v, False)} for c, (k, v) in zip(cache, kv)]
    r = {**{k: v[None] for k, v in request.items()}, "count": jnp.zeros(1, jnp.int32),
         "history": jnp.full((1, state["history"].shape[1]), -2, jnp.int32), "tokens": jnp.zeros(1, jnp.int32)}
    tok = sample(logits[None], r["temperature"], r["top_k"], r["top_p"], r["keys"], r["count"])
    r, done = _finish(r, jnp.ones(1, bool), tok)
    r.update(lengths=length[None], active=~done)
    state = {k: v.at[row].set(r[k][0], mode="drop") for k, v in state.items()}
    return cache, state, tok[0], done[0]


def grouped_attention(q: jax.Array, k: Any, v: Any, valid: jax.Array, kt: bool = False) -> jax.Array:
    """q [B, H, hd] over k/v [KV, B, W, hd] (the cache's layout; k [KV, B, hd, W] with `kt`), or lists of such
    blocks read in turn, where valid [B, sum W], kv heads shared by groups of H/KV query heads without repeating
    them; scores, softmax and the blocks' sum in fp32 (as `dot_attention`)."""
    ks, vs = (list(x) if isinstance(x, (list, tuple)) else [x] for x in (k, v))
    b, h, hd = q.shape
    kvh = ks[0].shape[0]
    qh = q.reshape(b, kvh, h // kvh, hd).transpose(1, 0, 2, 3)
    s = jnp.concatenate([jnp.einsum("kbgd,kbds->kbgs" if kt else "kbgd,kbsd->kbgs", qh, kb,
                                    preferred_element_type=jnp.float32) for kb in ks], axis=-1) * (hd ** -0.5)
    s = jnp.where(valid[None, :, None, :], s, NEG)
    p = jax.nn.softmax(s, axis=-1).astype(vs[0].dtype)
    out, start = None, 0
    for vb in vs:
        # kv heads and rows stay leading (as in the cache): another output order made XLA:CPU copy v per layer
        part = jnp.einsum("kbgs,kbsd->kbgd", p[..., start:start + vb.shape[2]], vb,
                          preferred_element_type=jnp.float32)
        out, start = part if out is None else out + part, start + vb.shape[2]
    return out.astype(q.dtype).transpose(1, 0, 2, 3).reshape(b, h, hd)


def decode_step(weights: dict, cache: list, state: dict, *, cfg: LlamaConfig, window: int, paged: str = ""):
    """Advance every active row by one token -> (cache, state, tokens [B], done [B], overflow [B]).
    Attends over the cache blocks starting below `window` (static; the blocks must cover every active row's
    length: `window_for`), each written at the rows whose position falls in it; blocks past the window pass
    through untouched (donated, aliased). The keys are `kt`-transposed (above) but for paged "kernel" /
    "interpret": through infer/paged.py over the one block (each row its own length; window unused)."""
    sizes = [x.shape[2] for x in cache[0]["v"]]
    edges = np.cumsum([0] + sizes)
    b, s = state["tokens"].shape[0], int(edges[-1])
    pos, live = state["lengths"], state["active"]
    overflow = live & (pos >= s)
    live = live & ~overflow
    nblocks = len(sizes) if paged else blocks_for(sizes, min(window, s))
    rows = jnp.arange(b, dtype=jnp.int32)
    valid = jnp.arange(int(edges[nblocks]), dtype=jnp.int32)[None] <= pos[:, None]
    new_cache = []

    def attend(q, k, v):
        kept = {"k": list(c["k"]), "v": list(c["v"])}
        for i in range(nblocks):
            # rows and write index dims 1 and 2: the update is [KV, B, hd], one row's slot each; rows whose
            # position lies outside this block write past its end: dropped
            at = jnp.where(live & (pos >= edges[i]) & (pos < edges[i + 1]), pos - int(edges[i]), sizes[i])
            for name, new in (("k", k), ("v", v)):
                buf, new = kept[name][i], new[:, 0].astype(kept[name][i].dtype)  # [B, KV, hd]
                # k [KV, B, hd, S] (kt): the two index arrays, split by a slice, lead the update's dims
                buf = (buf.at[:, rows, :, at].set(new, mode="drop") if name == "k" and not paged else
                       buf.at[:, rows, at].set(new.swapaxes(0, 1), mode="drop"))
                kept[name][i] = constrain(buf, CACHE)
        if paged:
            out = paged_decode_attention(q[:, 0], kept["k"][0], kept["v"][0], jnp.where(live, pos + 1, 1),
                                         interpret=paged == "interpret")
        else:
            out = grouped_attention(q[:, 0], [x.astype(q.dtype) for x in kept["k"][:nblocks]],
                                    [x.astype(q.dtype) for x in kept["v"][:nblocks]], valid, kt=True)
        return out[:, None], kept

    x = _embed(weights, state["tokens"][:, None], cfg)
    cos, sin = rotary_tables(pos[:, None], cfg.dim_per_head, cfg.rope_theta)
    for w, c in zip(weights["layers"], cache):
        x, kept = _block(w, x, cos, sin, attend, cfg)
        new_cache.append(kept)
    logits = _logits(weights, _rms(x[:, 0], weights["final_norm"], cfg), cfg)
    tok = sample(logits, state["temperature"], state["top_k"], state["top_p"], state["keys"], state["count"])
    state, done = _finish(state, live, tok)
    state = {**state, "lengths": jnp.where(live, pos + 1, pos), "active": live & ~done}
    return new_cache, state, tok, done, overflow
