"""Attention cores: the one masking rule, plain masked attention, and block-sparse self-attention for packed rows.

Masking is one rule for every case: query slot i sees key slot j when j <= i (causal by slot) and both carry the
same segment id, with 0 meaning padding. Packed rows (segment ids 1,2,3...), right or left padding (ids 1/0) and
cached decoding (cache slots with their own segment ids) all reduce to it.

`block_sparse_attention` is the training path. A packed row of short examples needs, for each block of queries,
only the keys of the segments those queries are in: the model computes once per forward (`key_block_starts`) the
first key block each query block needs in any row, and each query block then attends over a window of keys chosen
at run time among a few static sizes (1, 2, 4, ... blocks, or everything before it) with `lax.switch`. Exact: the
skipped keys are masked for every query of the block. Its gradient is written by hand (flash-attention style: the
forward keeps only the output and the log-sum-exp, the backward recomputes each block's probabilities), so only the
chosen window is ever computed, forward or backward, and no [T, T] probabilities are stored between the passes.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = Any
NEG = float(jnp.finfo(jnp.float32).min)
BLOCK = 128


class WholeRows(NamedTuple):
    """Rows that attend only within themselves (training, scoring, a prefill at slot 0), for the fused kernels:
    splash takes the segment ids, block_sparse the first key block of each query block; cuDNN needs only the mask
    (neither set)."""
    segment_ids: Array | None = None  # [B, T], splash
    key_block_starts: Array | None = None  # [T / BLOCK], block_sparse (`key_block_starts`)


def attention_mask(q_slots: Array, q_seg: Array, k_slots: Array, k_seg: Array) -> Array:
    """Boolean [B, 1, Tq, Tk] mask: causal by slot, same segment, and the key not padding."""
    causal = k_slots[:, None, :] <= q_slots[:, :, None]
    same = (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] != 0)
    return (causal & same)[:, None]


def _repeat_kv(x: Array, heads: int) -> Array:
    return x if x.shape[2] == heads else jnp.repeat(x, heads // x.shape[2], axis=2)


def dot_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """q [B,Tq,H,hd], k/v [B,Tk,KV,hd] (grouped-query when KV < H), mask [B,1,Tq,Tk]; softmax in fp32.

    Grouped kv heads are repeated up to H so both contractions are plain 4-D einsums: XLA's CPU backend ran the
    5-D grouped form ~3x slower forward+backward, and the repeat's backward is only a sum over each group."""
    h, hd = q.shape[2], q.shape[3]
    k, v = _repeat_kv(k, h), _repeat_kv(v, h)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * (hd ** -0.5)
    # A finite fill (not -inf) keeps fully masked rows (padding queries) finite: they average v and are never
    # trained on, so no second pass is spent zeroing them.
    scores = jnp.where(mask, scores, NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def pad_to_blocks(x: Array, axes: tuple[int, ...], block: int, value=0) -> Array:
    """Pad the given axes of x up to a multiple of block (padding slots are masked: they see and are seen by none)."""
    pads = [(0, 0)] * x.ndim
    for a in axes:
        pads[a] = (0, -x.shape[a] % block)
    return jnp.pad(x, pads, constant_values=value) if any(p[1] for p in pads) else x


def key_block_starts(mask: Array, block: int = BLOCK) -> Array:
    """[ceil(T/block)] int32: for each block of queries, the first key block that any query of it, in any row, may
    see (the block itself when all its queries are padding). mask: the [B, 1, T, T] self-attention mask."""
    mask = pad_to_blocks(mask, (2, 3), block, False)
    b, _, t, _ = mask.shape
    nb = t // block
    seen = jnp.any(mask[:, 0].reshape(b, nb, block, t), axis=(0, 2))  # [nb, T]: key slot seen by the block
    first = jnp.where(jnp.any(seen, axis=-1), jnp.argmax(seen, axis=-1), jnp.arange(nb) * block)
    return (first // block).astype(jnp.int32)


def _windows(i: int) -> list[int]:
    """Static key-window sizes (in blocks) offered to query block i: 1, 2, 4, ... and all i+1 blocks."""
    sizes, w = [], 1
    while w < i + 1:
        sizes.append(w)
        w *= 2
    return sizes + [i + 1]


def _branch_index(i: int, start: Array) -> Array:
    need = i + 1 - start  # blocks of keys needed
    return jnp.sum(jnp.asarray(_windows(i)[:-1]) < need).astype(jnp.int32)


def _block_fwd(q, k, v, mask, lo, hi, klo):
    s = jnp.einsum("bqhd,bkhd->bhqk", q[:, lo:hi], k[:, klo:hi], preferred_element_type=jnp.float32)
    s = jnp.where(mask[:, :, lo:hi, klo:hi], s * (q.shape[-1] ** -0.5), NEG)
    m = jnp.max(s, axis=-1, keepdims=True)
    p = jnp.exp(s - m)
    l = jnp.sum(p, axis=-1, keepdims=True)
    o = jnp.einsum("bhqk,bkhd->bqhd", (p / l).astype(v.dtype), v[:, klo:hi])
    return o, (m + jnp.log(l))[..., 0]  # lse [B, H, blk]


def _forward(q, k, v, mask, starts, block):
    t = q.shape[1]
    outs, lses = [], []
    for i in range(t // block):
        lo, hi = i * block, (i + 1) * block
        branches = [functools.partial(_block_fwd, lo=lo, hi=hi, klo=hi - w * block) for w in _windows(i)]
        o, lse = jax.lax.switch(_branch_index(i, starts[i]), branches, q, k, v, mask)
        outs.append(o)
        lses.append(lse)
    return jnp.concatenate(outs, axis=1), jnp.concatenate(lses, axis=2)


def _block_bwd(q, k, v, mask, do, lse, delta, dk, dv, lo, hi, klo):
    scale = q.shape[-1] ** -0.5
    qi, kw, vw, doi = q[:, lo:hi], k[:, klo:hi], v[:, klo:hi], do[:, lo:hi]
    s = jnp.einsum("bqhd,bkhd->bhqk", qi, kw, preferred_element_type=jnp.float32) * scale
    p = jnp.where(mask[:, :, lo:hi, klo:hi], jnp.exp(s - lse[:, :, lo:hi, None]), 0.0)
    dp = jnp.einsum("bqhd,bkhd->bhqk", doi, vw, preferred_element_type=jnp.float32)
    ds = (p * (dp - delta[:, :, lo:hi, None]) * scale).astype(q.dtype)
    dq = jnp.einsum("bhqk,bkhd->bqhd", ds, kw)
    dk = dk.at[:, klo:hi].add(jnp.einsum("bhqk,bqhd->bkhd", ds, qi).astype(dk.dtype))
    dv = dv.at[:, klo:hi].add(jnp.einsum("bhqk,bqhd->bkhd", p.astype(v.dtype), doi).astype(dv.dtype))
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _sparse(q, k, v, mask, starts, block):
    return _forward(q, k, v, mask, starts, block)[0]


def _sparse_fwd(q, k, v, mask, starts, block):
    o, lse = _forward(q, k, v, mask, starts, block)
    return o, (q, k, v, mask, starts, o, lse)


def _sparse_bwd(block, res, do):
    q, k, v, mask, starts, o, lse = res
    # delta = rowsum(dO * O): the softmax-gradient term, once for all blocks. Padding queries' probabilities are
    # zeroed in the backward (their outputs are never used), so nothing flows from them.
    delta = jnp.einsum("bqhd,bqhd->bhq", do.astype(jnp.float32), o.astype(jnp.float32))
    dk, dv = jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32)
    dqs = []
    for i in range(q.shape[1] // block):
        lo, hi = i * block, (i + 1) * block
        branches = [functools.partial(_block_bwd, lo=lo, hi=hi, klo=hi - w * block) for w in _windows(i)]
        dq, dk, dv = jax.lax.switch(_branch_index(i, starts[i]), branches, q, k, v, mask, do, lse, delta, dk, dv)
        dqs.append(dq)
    return jnp.concatenate(dqs, axis=1), dk.astype(k.dtype), dv.astype(v.dtype), None, None


_sparse.defvjp(_sparse_fwd, _sparse_bwd)


def block_sparse_attention(q: Array, k: Array, v: Array, mask: Array, starts: Array, block: int = BLOCK) -> Array:
    """Self-attention (query slot i = key slot i) over q [B,T,H,hd], k/v [B,T,KV,hd], mask [B,1,T,T], computing
    for each query block only the keys from `starts` (see `key_block_starts`) on. A T that is not a multiple of
    block is padded with masked slots, which are cut off again."""
    t, h = q.shape[1], q.shape[2]
    q, k, v = (pad_to_blocks(x, (1,), block) for x in (q, _repeat_kv(k, h), _repeat_kv(v, h)))
    return _sparse(q, k, v, pad_to_blocks(mask, (2, 3), block, False), starts, block)[:, :t]
