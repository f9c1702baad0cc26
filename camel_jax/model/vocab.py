"""The padded vocabulary: embedding rows and head columns stored up to `LlamaConfig.padded_vocab`, never used.

Why pad: the table is split over `mp`, and the released TÜLU checkpoints have 32,001 tokens (LLaMA's 32,000 plus
`<pad>`), which no mp > 1 divides. camel_jax stores 32,128 rows instead; `vocab_size` stays the real size
(model_config.json, HF config.json), conversion pads on import and trims on export, so import -> export is
bit-exact. Padded ids are inert:
  * their rows and columns are zero at init and on import (`zero_padded_init`, `pad_vocab`);
  * their logits are masked to `MASKED_LOGIT` before any log-sum-exp, softmax, argmax or sampling
    (`mask_padded_logits`), so they are never predicted or sampled, and their gradients are exactly zero: AdamW
    (weight decay included) keeps zero rows zero;
  * no data pipeline produces an id >= vocab_size, so the padded embedding rows are never looked up.
Masking, not slicing, inside: the logits are split over mp on the vocabulary axis, and a slice at 32,001 of a
32,128-wide sharded axis makes GSPMD move data between shards; an elementwise mask stays local. Only the model's
public output (`Llama(..., trim_logits=True)`, the default) is sliced to the real vocabulary.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# Finite, so `logits * onehot` stays 0 (not NaN) and a temperature cannot overflow it; exp() of it is exactly 0.
MASKED_LOGIT = -1e30


def mask_padded_logits(logits: jax.Array, vocab_size: int) -> jax.Array:
    """Logits [..., Vp] with every column >= vocab_size set to MASKED_LOGIT (identity when nothing is padded).
    jnp.where passes no gradient to the masked entries."""
    if logits.shape[-1] == vocab_size:
        return logits
    keep = jnp.arange(logits.shape[-1], dtype=jnp.int32) < vocab_size
    return jnp.where(keep, logits, jnp.asarray(MASKED_LOGIT, logits.dtype))


def zero_padded_init(init: Callable, vocab_size: int, axis: int) -> Callable:
    """A Flax initializer like `init` whose entries at index >= vocab_size along `axis` are zero."""
    def initializer(key: jax.Array, shape: tuple, dtype: Any = jnp.float32) -> jax.Array:
        x = init(key, shape, dtype)
        if shape[axis] == vocab_size:
            return x
        idx = jax.lax.broadcasted_iota(jnp.int32, shape, axis % len(shape))
        return jnp.where(idx < vocab_size, x, jnp.zeros((), x.dtype))
    return initializer


def pad_vocab(x: np.ndarray, padded: int, axis: int, dtype: Any = None) -> np.ndarray:
    """A new numpy array: `x` (cast to `dtype`) followed by zeros along `axis` up to `padded` entries, written
    in one copy (conversion: HF/llama2.c -> ours; `x` may be a memory map or a transposed view)."""
    have = x.shape[axis]
    if have > padded:
        raise ValueError(f"vocabulary axis has {have} entries, more than the padded size {padded}")
    shape = list(x.shape)
    shape[axis] = padded
    out = np.zeros(shape, dtype or x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, have)
    out[tuple(index)] = x
    return out


def trim_vocab(x: np.ndarray, vocab_size: int, axis: int) -> np.ndarray:
    """The real vocabulary of a padded array along `axis` (conversion: ours -> HF)."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, vocab_size)
    return x[tuple(index)]
