"""int8 weight-only quantization for serving: every matmul weight stored int8 with one scale per output channel.

Which weights: the layers' q/k/v/o and gate/up/down kernels [in, out], the untied head [D, V], and the embedding
[V, D] quantized per row (per token), which is per output channel of the head when the embedding is tied — one
int8 table then serves both the lookup (a row times its scale) and the head, where keeping a second copy in the
compute dtype would forfeit most of a small model's saving (SmolLM2-135M: the embedding is 21% of its weights).
Norm scales stay in the compute dtype; activations, the KV cache and the logits are unchanged.

The scheme: symmetric absmax, `scale[o] = max_i |W[i, o]| / 127`, `q = round(W / scale)` in [-127, 127] (an
all-zero channel, such as the vocabulary's padded rows, gets scale 1 and stays 0). The scale is fp32. A matmul is
`(x @ q.astype(dtype)) * scale`: the scale applies to the output channel after the dot, which is exact algebra
(x @ (q * s) = (x @ q) * s for a per-column s), so only the weight's rounding (at most scale/2 per entry) differs
from the unquantized model. On TPU/GPU XLA fuses the int8->dtype convert into the dot's operand read, so a decode
step (weight-bandwidth bound) reads a quarter of the fp32 bytes. On CPU it does not: the optimized HLO converts
each int8 weight to a full fp32 temporary (a loop fusion) and then runs the library dot on it (checked with
`jax.jit(...).lower(...).compile().as_text()`), so int8 saves memory at rest but each step pays an extra pass over
the weights: on this CPU int8 is slower than fp32 (figures in the README, `scripts/bench_int8.py`).

Sharding: the int8 tensor takes its kernel's logical names, the scale the name of its output axis (so under
SERVE_RULES a q/k/v/gate/up scale splits over mp with its columns, an o/down scale is whole, the embedding's and
head's scale splits with the vocabulary).

How it differs from the paper's 8-bit evaluation (every HF job with `--load_in_8bit`: bitsandbytes LLM.int8,
Dettmers et al. 2022): LLM.int8 quantizes activations too (per row, vector-wise) and multiplies int8 x int8, with
a mixed-precision decomposition that keeps the input features holding outliers (|x| >= 6) in fp16 for both
operands; its weights are per-output-channel absmax int8 like ours. Ours keeps activations in the compute dtype
(weight-only, as in most serving stacks), has no outlier path (none is needed when activations are not rounded),
and quantizes the embedding too (bitsandbytes leaves embeddings and the head in fp16). Scores from the two are
therefore close but not bit-comparable; our measured logit error on SmolLM2 is in the README.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("none", "int8")
QMAX = 127


def check_mode(mode: str | None) -> str | None:
    """None for no quantization ('none' or None), else the mode; anything else is a ValueError naming the choices."""
    if mode in (None, "none"):
        return None
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def quantize_int8(w: Any, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D weight -> (int8 of its shape, fp32 scales along `axis`, the output-channel axis), symmetric absmax."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize_int8 takes a 2-D weight, got shape {w.shape}")
    amax = np.max(np.abs(w), axis=1 - axis)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    s = scale[None, :] if axis == 1 else scale[:, None]
    q = np.clip(np.rint(w / s), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize(q: Any, scale: Any, axis: int) -> jax.Array:
    """The fp32 weight an (int8, scale) pair stands for."""
    s = scale[None, :] if axis == 1 else scale[:, None]
    return jnp.asarray(q, jnp.float32) * s


def is_quantized(w: Any) -> bool:
    return isinstance(w, dict) and "int8" in w


def project(x: jax.Array, w: Any, dtype: Any) -> jax.Array:
    """x [..., D] @ w [D, F] in `dtype`, w a plain kernel or {"int8" [D, F], "scale" [F]}; computed on 2-D rows
    (as model.layers.project), the int8 scale applied to the fp32 result's columns."""
    if not is_quantized(w):
        y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(dtype), w.astype(dtype))
        return y.reshape(*x.shape[:-1], w.shape[-1])
    q, scale = w["int8"], w["scale"]
    y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(dtype), q.astype(dtype), preferred_element_type=jnp.float32)
    return (y * scale).astype(dtype).reshape(*x.shape[:-1], q.shape[-1])


def project_rows(x: jax.Array, table: Any, dtype: Any) -> jax.Array:
    """x [B, D] against a [V, D] table (the tied head: x @ table.T) -> [B, V] fp32."""
    if not is_quantized(table):
        return jnp.einsum("bd,vd->bv", x, table).astype(jnp.float32)
    y = jnp.einsum("bd,vd->bv", x.astype(dtype), table["int8"].astype(dtype), preferred_element_type=jnp.float32)
    return y * table["scale"]


def lookup(table: Any, tokens: jax.Array, dtype: Any) -> jax.Array:
    """Rows of a [V, D] embedding (plain, or int8 per row) for integer `tokens` -> [..., D] in `dtype`."""
    if not is_quantized(table):
        return jnp.take(table, tokens, axis=0)
    rows = jnp.take(table["int8"], tokens, axis=0).astype(jnp.float32)
    return (rows * jnp.take(table["scale"], tokens, axis=0)[..., None]).astype(dtype)


def weight_bytes(weights: Any) -> int:
    """Bytes of every array in a weight tree (what the weights hold on device, summed over leaves)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(weights)))
