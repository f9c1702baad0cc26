"""TPU self-attention for training: JAX's Pallas splash-attention kernel, under camel_jax's masking rule and meshes.

Why: on TPU a fused kernel that skips masked blocks beats anything built from XLA ops, and JAX ships one
(`jax.experimental.pallas.ops.tpu.splash_attention`, used by MaxText), with its own backward kernels, grouped-query
heads and segment ids. Its rule is camel_jax's (`attention.attention_mask`): causal by slot, same segment id. The one
difference is padding (segment 0): padding queries here attend to earlier padding keys rather than to nothing, and
their outputs are never used; real queries never see padding, whose id differs from theirs.

The kernel works per example on [heads, T, head_dim] and knows nothing of meshes, so it runs under `shard_map`:
rows split as "batch" and heads as "act_heads" by the workload's rule table (partition.py; num_heads and
num_kv_heads divide by mp: checked by the mesh builder). T is padded up to a multiple of 128 with padding slots.
`interpret=True` runs the same kernel through Pallas' interpreter on any backend: slow, but it is how the CPU tests
check it against `dot_attention`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as sa

from camel_jax.model.attention import pad_to_blocks
from camel_jax.model.partition import BHTD, BT, mesh_spec

MIN_BLOCK = 128
# The kernel tags its forward residuals (output, log-sum-exp) with this name, so a remat policy can keep them and
# the backward pass need not run the forward kernel again (llama.py's "save_dots" does).
RESIDUALS = "splash_residuals"
BLOCKS = (512, 256, 128)  # the largest that divides the (padded) length is used


def _kernel(t: int, heads: int, interpret: bool):
    block = next(b for b in BLOCKS if t % b == 0)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = sa.MultiHeadMask([sa.CausalMask((t, t))] * heads)
    # Built per trace (a kernel cached across traces leaked tracers under flax's nn.scan); the block tables are
    # computed with numpy, so this costs milliseconds.
    return sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret,
                              residual_checkpoint_name=RESIDUALS)


def _local(q, k, v, seg, interpret: bool):
    """One shard: q [b, H, T, hd], k/v [b, KV, T, hd], seg [b, T] -> [b, H, T, hd]."""
    kernel = _kernel(q.shape[2], q.shape[1], interpret)
    return jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=sa.SegmentIds(s, s)))(q, k, v, seg)


def splash_attention(q, k, v, segment_ids, interpret: bool = False):
    """q [B,T,H,hd], k/v [B,T,KV,hd] (KV divides H), segment_ids [B,T] (0 = padding) -> [B,T,H,hd].

    Softmax scale 1/sqrt(hd) as in `dot_attention`; inside a mesh context the call is split over it."""
    b, t, h, hd = q.shape
    q, k, v, seg = (pad_to_blocks(x, (1,), MIN_BLOCK) for x in (q, k, v, segment_ids.astype(jnp.int32)))
    q = q * jnp.asarray(hd ** -0.5, q.dtype)
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # the kernel's [heads, T, hd] per example
    fn = functools.partial(_local, interpret=interpret)
    x_spec = mesh_spec(BHTD)  # kv heads follow the query heads' split (both divide by mp)
    if x_spec is not None:
        fn = jax.shard_map(fn, in_specs=(x_spec, x_spec, x_spec, mesh_spec(BT)), out_specs=x_spec, check_vma=False)
    out = fn(q, k, v, seg)
    return jnp.swapaxes(out, 1, 2)[:, :t]
