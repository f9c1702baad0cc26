"""Token choice with per-row parameters, so one compiled step serves every mix of requests.

Every sampling parameter is an array over the slots (temperature 0 = greedy, top_k 0 = off, top_p 1 = off), never
a static argument: changing them recompiles nothing. Randomness is per request, not per batch: a row's key is
derived from its request's seed and sample index (`request_key`) and folded with the index of the token being
chosen, so a seeded request draws the same tokens in any slot, beside any neighbours. Sampling is Gumbel-max over
the kept tokens (argmax of logit/T + Gumbel noise: an exact draw from the softmax), one noise vector per row.

Stop sequences are checked on device as token suffixes (`stop_hit`); the host then cuts the text exactly (engine).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def request_key(seed: int, sample: int) -> np.ndarray:
    """The raw uint32[2] key of sample `sample` of a request seeded `seed`."""
    return np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), sample), np.uint32)


def filtered_logits(logits: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """logits [B, V] fp32 scaled by 1/temperature with every token outside the top-k / nucleus set to -inf.
    The kept set is a prefix of the tokens sorted by logit: rank < top_k (when > 0), and the smallest prefix whose
    probability reaches top_p (the most likely token always). Tokens tied with the last kept one are kept too."""
    t = jnp.where(temperature > 0, temperature, 1.0).astype(jnp.float32)
    scaled = logits / t[:, None]
    ordered = -jnp.sort(-scaled, axis=-1)
    probs = jax.nn.softmax(ordered, axis=-1)
    rank = jnp.arange(scaled.shape[-1], dtype=jnp.int32)[None]
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p[:, None]
    keep &= (rank < top_k[:, None]) | (top_k[:, None] <= 0)
    keep |= rank == 0
    count = jnp.sum(keep, axis=-1)
    threshold = jnp.take_along_axis(ordered, (count - 1)[:, None], axis=-1)
    return jnp.where(scaled >= threshold, scaled, -jnp.inf)


def _gumbel_argmax(logits: jax.Array, key: jax.Array, index: jax.Array) -> jax.Array:
    noise = jax.random.gumbel(jax.random.fold_in(key, index), logits.shape, jnp.float32)
    return jnp.argmax(logits + noise).astype(jnp.int32)


def sample(logits: jax.Array, temperature: jax.Array, top_k: jax.Array, top_p: jax.Array, keys: jax.Array,
           index: jax.Array) -> jax.Array:
    """Next token per row from fp32 logits [B, V] (padded columns already masked). keys [B, 2] uint32 (from
    `request_key`), index [B]: which generated token of its request each row is choosing. The sort only runs when
    some row samples."""
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sampled():
        drawn = jax.vmap(_gumbel_argmax)(filtered_logits(logits, temperature, top_k, top_p), keys, index)
        return jnp.where(temperature > 0, drawn, greedy)

    return jax.lax.cond(jnp.any(temperature > 0), sampled, lambda: greedy)


def stop_hit(history: jax.Array, stops: jax.Array) -> jax.Array:
    """[B] bool: a row's last generated tokens history [B, W] end with one of its stop sequences stops [B, N, W]
    (each right-aligned, -1 before it; an all -1 entry is no stop). History holds -2 before the first token."""
    used = stops >= 0
    match = jnp.all((stops == history[:, None, :]) | ~used, axis=-1) & jnp.any(used, axis=-1)
    return jnp.any(match, axis=-1)
