"""LLaMA building blocks in Flax linen: RMSNorm, rotary embeddings, attention with a KV cache, SwiGLU.

Rotary layout: camel_jax uses Hugging Face's *rotate_half* layout (each head's first half pairs with its second
half), so Hugging Face weights load with a transpose and no permutation. Meta/llama2.c checkpoints use the
*interleaved* layout (adjacent pairs); `camel_jax.convert.llama2c` permutes their q/k rows into ours, exactly as
transformers' `convert_llama_weights_to_hf.permute` does.

Attention cores and the masking rule live in `camel_jax.model.attention`.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from camel_jax.model.attention import WholeRows, block_sparse_attention, dot_attention
from camel_jax.model.config import LlamaConfig
from camel_jax.model.partition import BTD, BTHD, BTKD, constrain
from camel_jax.model.cudnn import cudnn_attention
from camel_jax.model.splash import splash_attention

Array = Any


def _dtype(name: str):
    return jnp.dtype(name)


class RMSNorm(nn.Module):
    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (x.shape[-1],),
                           self.param_dtype)
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        # HF casts back to the input dtype before multiplying by the weight.
        return (xf.astype(self.dtype) * scale.astype(self.dtype)).astype(self.dtype)


def project(x: Array, kernel: Array, dtype: Any) -> Array:
    """x [..., D] @ kernel [D, F] in `dtype`, computed on x flattened to 2-D rows (see Linear for why)."""
    y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(dtype), kernel.astype(dtype))
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


class Linear(nn.Module):
    """A bias-free projection `x @ kernel` (kernel [in, out], named "kernel" as in nn.Dense) applied to x flattened
    to 2-D. XLA's CPU backend runs the backward of a 3-D `[B, T, D] x [D, F]` dot_general about 2x slower than the
    same dot on `[B*T, D]` (the weight gradient contracts two axes and gets transposed copies); flattening first
    costs nothing (a bitcast) and gives the plain 2-D matmuls every backend is fastest at. `axes`: the kernel's
    logical names [in, out] (partition.py)."""
    features: int
    dtype: Any
    param_dtype: Any
    axes: tuple[str, str]
    kernel_init: Any = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        init = nn.with_logical_partitioning(self.kernel_init, self.axes)
        kernel = self.param("kernel", init, (x.shape[-1], self.features), self.param_dtype)
        return project(x, kernel, self.dtype)


def rotary_tables(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos/sin of shape [B, T, head_dim] for integer positions [B, T], in fp32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, hd/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: Array, cos: Array, sin: Array) -> Array:
    """x: [B, T, heads, hd]; rotate_half layout."""
    half = x.shape[-1] // 2
    xf = x.astype(jnp.float32)
    rot = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    out = xf * cos[:, :, None, :] + rot * sin[:, :, None, :]
    return out.astype(x.dtype)


class Attention(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x, cos, sin, mask, cache=None, cache_index=0, rows: WholeRows | None = None):
        """rows: the rows attend only within themselves, through the fused kernel `rows` is for (cuDNN, splash or
        block_sparse). None: plain masked attention (over the cache when there is one)."""
        cfg = self.config
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        h, kvh, hd = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
        dense = lambda feats, name, axes: Linear(feats, dt, pdt, axes, name=name)
        b, t, _ = x.shape
        q = constrain(dense(h * hd, "q", ("embed", "heads"))(x).reshape(b, t, h, hd), BTHD)
        k = constrain(dense(kvh * hd, "k", ("embed", "kv_heads"))(x).reshape(b, t, kvh, hd), BTKD)
        v = constrain(dense(kvh * hd, "v", ("embed", "kv_heads"))(x).reshape(b, t, kvh, hd), BTKD)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        new_cache, row_k, row_v = None, k, v
        if cache is not None:
            # Write this step's keys and values at their slots; a decode step then attends over the whole cache,
            # a prefill (rows given) within the prompt, on the values as the cache holds them.
            ck = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, cache_index, 0, 0))
            cv = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, cache_index, 0, 0))
            if rows is not None:
                row_k, row_v = k.astype(ck.dtype).astype(dt), v.astype(cv.dtype).astype(dt)
            k, v = ck.astype(dt), cv.astype(dt)
            new_cache = {"k": ck, "v": cv}
        if rows is not None and cfg.attention in ("cudnn", "cudnn_xla"):
            out = cudnn_attention(q, row_k, row_v, mask, implementation="cudnn" if cfg.attention == "cudnn" else "xla")
        elif rows is not None and rows.segment_ids is not None:
            out = splash_attention(q, row_k, row_v, rows.segment_ids, interpret=cfg.attention == "splash_interpret")
        elif rows is not None:
            out = block_sparse_attention(q, row_k, row_v, mask, rows.key_block_starts)
        else:
            out = dot_attention(q, k, v, mask)
        out = constrain(out, BTHD).reshape(b, t, h * hd)
        return dense(cfg.hidden_size, "o", ("heads", "embed"))(out), new_cache


class MLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        dense = lambda feats, name, axes: Linear(feats, dt, pdt, axes, name=name)
        gate = dense(cfg.intermediate_size, "gate", ("embed", "mlp"))(x)
        up = dense(cfg.intermediate_size, "up", ("embed", "mlp"))(x)
        hidden = constrain(nn.silu(gate) * up, ("batch", "seq", "act_mlp"))
        return dense(cfg.hidden_size, "down", ("mlp", "embed"))(hidden)


class DecoderLayer(nn.Module):
    """One pre-norm LLaMA block. Signature fits nn.scan: (carry, per-layer xs) -> (carry, ys)."""
    config: LlamaConfig

    @nn.compact
    def __call__(self, x, cache, cos, sin, mask, cache_index, rows):
        cfg = self.config
        dt, pdt = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        attn_out, new_cache = Attention(cfg, name="attn")(
            RMSNorm(cfg.rms_norm_eps, dt, pdt, name="attn_norm")(x), cos, sin, mask, cache, cache_index, rows)
        x = constrain(x + attn_out, BTD)
        x = x + MLP(cfg, name="mlp")(RMSNorm(cfg.rms_norm_eps, dt, pdt, name="mlp_norm")(x))
        return constrain(x, BTD), new_cache
