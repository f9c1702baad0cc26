"""GPU self-attention for training: cuDNN's fused flash attention through `jax.nn.dot_product_attention`, under
camel_jax's masking rule.

Why: on NVIDIA GPUs cuDNN's kernel never materialises the [T, T] probabilities and skips the causal upper triangle
(`is_causal=True`), which XLA's own ops do not do. The rule (`attention.attention_mask`: causal by slot, same segment
id, 0 = padding) is more than cuDNN's mask types say (causal, per-row lengths), so the segment part goes in as the
boolean `mask`, which JAX hands to cuDNN as an additive bias: exact for packed rows, padding and prefills alike. (Its
packed "THD" layout, which would skip the other segments' blocks too, needs Hopper and is not public API.) The cost
is a [B, 1, T, T] bias in the compute dtype, and its gradient, per micro-batch.

What cuDNN accepts (JAX checks it while tracing and raises otherwise): bf16/fp16 inputs, a head dim that is a multiple
of 8 up to 128 (256 from Hopper on), an even T when the bias is trained through (padded here). `supported` is that
test, so `attention="auto"` falls back to block_sparse where cuDNN would refuse. `implementation="xla"` runs the same
call through JAX's reference implementation on any backend: how the CPU tests check the arguments and the masking.
"""
from __future__ import annotations

import jax

from camel_jax.model.attention import pad_to_blocks

DTYPES = ("bfloat16", "float16")
MAX_HEAD_DIM = 128  # pre-Hopper limit (Hopper: 256); the safe one to choose by without asking the device


def supported(dtype: str, head_dim: int) -> bool:
    """Whether cuDNN's flash attention takes a model with this compute dtype and head dim."""
    return dtype in DTYPES and head_dim % 8 == 0 and head_dim <= MAX_HEAD_DIM


def cudnn_attention(q, k, v, mask, implementation: str = "cudnn"):
    """q [B,T,H,hd], k/v [B,T,KV,hd] (KV divides H), mask [B,1,T,T] (the self-attention mask) -> [B,T,H,hd].

    Softmax scale 1/sqrt(hd), as `dot_attention`. An odd T gets one masked padding slot, cut off again."""
    t = q.shape[1]
    q, k, v = (pad_to_blocks(x, (1,), 2) for x in (q, k, v))
    mask = pad_to_blocks(mask, (2, 3), 2, False)
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation=implementation)
    return out[:, :t]
