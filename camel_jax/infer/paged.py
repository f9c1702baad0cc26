"""TPU decode attention: JAX's Pallas paged-attention kernel over the engine's cache, read as pages in place.

Why: a decode step's attention on TPU should read only the cache slots each row holds, not a dense window padded
to the longest row, and a fused kernel does that without materialising scores. JAX ships one
(`jax.experimental.pallas.ops.tpu.paged_attention`): q [B, H, hd] against k/v pages [KV, pages, page, hd], each row
reading the pages its `page_indices` name up to its own length (compute blocks past a row's length are skipped).

The engine's cache per layer is [KV, B, S, hd] (partition.CACHE), so the same buffer *is* a page pool: reshaped to
[KV, B * S/page, page, hd] (a bitcast, no copy) with row b owning pages b*S/page ... (b+1)*S/page - 1. Nothing is
allocated per request, and the cache written in place by the step is read by the kernel unchanged.

Numerics: the kernel casts each k/v page to bfloat16 before its dots (its `_maybe_dequantize`), so with an fp32
cache it differs from `decode.grouped_attention` by bf16 rounding of k and v; with a bf16 cache (TPU serving)
it agrees to fp32 accumulation order. It does not scale q, so the 1/sqrt(hd) is applied here.

The kernel knows nothing of meshes: inside a mesh context it runs under `shard_map`, kv heads (and the query
heads they serve: both divide by mp) and rows split as SERVE_RULES says; each shard's rows own their local pages.
`interpret=True` runs it through Pallas' TPU interpreter (any backend, slow): how the CPU tests check it.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention

from camel_jax.model.partition import CACHE, mesh_spec

PAGE_SIZES = (128, 64, 32, 16, 8)  # the largest dividing the cache length is used
BLOCK_TOKENS = 512  # tokens per compute block (pages_per_compute_block = this / page, or fewer)


def page_size(max_len: int) -> int | None:
    """The page size for a cache of max_len slots per row, None when none divides it (then no paged path)."""
    return next((p for p in PAGE_SIZES if max_len % p == 0), None)


def _local(q, k, v, lengths, page: int, interpret: bool):
    """One shard: q [b, H, hd], k/v [KV, b, S, hd], lengths [b] -> [b, H, hd]."""
    kvh, b, s, hd = k.shape
    pages = s // page
    per_block = max(d for d in range(1, pages + 1) if pages % d == 0 and d * page <= max(BLOCK_TOKENS, page))
    k_pages, v_pages = (x.reshape(kvh, b * pages, page, hd) for x in (k, v))
    indices = jnp.arange(b * pages, dtype=jnp.int32).reshape(b, pages)
    with pltpu.force_tpu_interpret_mode() if interpret else contextlib.nullcontext():
        return paged_attention(q, k_pages, v_pages, lengths.astype(jnp.int32), indices,
                               pages_per_compute_block=per_block)


def paged_decode_attention(q: jax.Array, k: jax.Array, v: jax.Array, lengths: jax.Array, *,
                           interpret: bool = False) -> jax.Array:
    """q [B, H, hd] (one new token per row) over caches k/v [KV, B, S, hd] holding `lengths` [B] slots each (the
    new token's included) -> [B, H, hd]. S must be a multiple of a page size (`page_size`)."""
    page = page_size(k.shape[2])
    if page is None:
        raise ValueError(f"paged attention needs a cache length divisible by one of {PAGE_SIZES}, got {k.shape[2]}")
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    fn = functools.partial(_local, page=page, interpret=interpret)
    cache_spec = mesh_spec(CACHE)
    if cache_spec is not None:
        rows, heads = cache_spec[1], cache_spec[0]
        q_spec = jax.sharding.PartitionSpec(rows, heads, None)
        fn = jax.shard_map(fn, in_specs=(q_spec, cache_spec, cache_spec, jax.sharding.PartitionSpec(rows)),
                           out_specs=q_spec, check_vma=False)
    return fn(q, k, v, lengths)
