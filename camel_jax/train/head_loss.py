"""The output projection and the masked cross-entropy fused, chunk by chunk, skipping chunks with no trained token.

Why: in instruction tuning only the responses are trained (about half of the tokens of the TÜLU mix), yet the
plain path computes [B, T, vocab] logits for every token, and the vocabulary projection is the largest matmul of a
small model (and its logits the largest activation of a big one). Here the rows are joined into `groups` long rows
(one per data shard, so nothing leaves its shard), each long row's trained tokens are moved to its front (a stable
permutation: shapes stay static), the long rows are cut into chunks of `chunk` slots per original row, and a
`lax.scan` runs the projection only for chunks that hold a trained token in some long row (`lax.cond`), computing
loss *and* gradients there (the "fused linear cross-entropy" idea). Joining rows makes the skipped share the
batch's untrained share rather than the least-trained row's:
  logits = h W (fp32), nll = logsumexp - logits[target], dlogits = (softmax - onehot) * w,
  dh = dlogits W^T, dW += h^T dlogits.
Logits never exist for the whole batch, and the backward pass only scales the stored dh, dW by the cotangent.

`head_nll_sum(hidden, kernel, targets, weights, chunk, groups)` == `sum(token_nll(hidden @ kernel, targets) * weights)`
up to fp32 rounding, and so are its gradients (tests/test_head_loss.py). With `vocab` < kernel.shape[1] (a padded
vocabulary, model/vocab.py) the columns past it are masked before the log-sum-exp: the loss is over the real
vocabulary alone and those columns' gradients are exactly zero.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from camel_jax.model.partition import constrain
from camel_jax.model.vocab import mask_padded_logits

KERNEL = ("embed", "vocab")  # the head kernel's logical names: its gradient carry is kept in the same split


def _row_order(weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row: slots with a nonzero weight first (stable), its inverse, and the count of such slots [B]."""
    active = weights != 0
    order = jnp.argsort(~active, axis=-1, stable=True)
    inverse = jnp.argsort(order, axis=-1)
    return order, inverse, jnp.sum(active, axis=-1)


def _permute(x: jax.Array, index: jax.Array) -> jax.Array:
    """x[b, index[b, t]] for x [B, T, ...] (row-local, so batch sharding is kept)."""
    idx = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def _chunks(x: jax.Array, chunk: int) -> jax.Array:
    """[B, T, ...] -> [T/chunk, B, chunk, ...] (T padded with zeros to a multiple of chunk)."""
    b, t = x.shape[:2]
    pad = -t % chunk
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape(b, (t + pad) // chunk, chunk, *x.shape[2:])
    return jnp.moveaxis(x, 1, 0)


def _fused(hidden, kernel, targets, weights, chunk, real_vocab, split_carry=True):
    b, t, d = hidden.shape
    vocab = kernel.shape[1]
    order, inverse, n_active = _row_order(weights)
    limit = jnp.max(n_active)  # chunks starting at or past this slot are empty in every row
    hs, ts, ws = (_chunks(_permute(a, order), chunk) for a in (hidden, targets, weights))

    def body(carry, xs):
        loss, dw = carry
        start, h, tg, w = xs  # h [B, chunk, D]

        def active(dw):
            h2 = h.reshape(b * chunk, d)
            logits = mask_padded_logits(jnp.dot(h2, kernel, preferred_element_type=jnp.float32), real_vocab)
            lse = jax.nn.logsumexp(logits, axis=-1)
            onehot = jax.nn.one_hot(tg.reshape(-1), vocab, dtype=jnp.float32)
            w2 = w.reshape(-1).astype(jnp.float32)
            nll = lse - jnp.sum(logits * onehot, axis=-1)
            dlogits = ((jnp.exp(logits - lse[:, None]) - onehot) * w2[:, None]).astype(kernel.dtype)
            dh = jnp.dot(dlogits, kernel.T, preferred_element_type=jnp.float32)
            dw = dw + jnp.dot(h2.T, dlogits, preferred_element_type=jnp.float32)
            dw = constrain(dw, KERNEL) if split_carry else dw
            return jnp.sum(nll * w2), dh.reshape(b, chunk, d), dw

        def idle(dw):
            return jnp.zeros((), jnp.float32), jnp.zeros((b, chunk, d), jnp.float32), dw

        part, dh, dw = jax.lax.cond(start < limit, active, idle, dw)
        return (loss + part, dw), dh

    starts = jnp.arange(hs.shape[0], dtype=jnp.int32) * chunk
    dw0 = jnp.zeros(kernel.shape, jnp.float32)  # constrained, else whole [D, V] fp32 on every device
    dw0 = constrain(dw0, KERNEL) if split_carry else dw0
    (loss, dw), dhs = jax.lax.scan(body, (jnp.zeros((), jnp.float32), dw0),
                                   (starts, hs, ts, ws))
    dh = jnp.moveaxis(dhs, 0, 1).reshape(b, -1, d)[:, :t]
    return loss, _permute(dh, inverse), dw


def _grouped(hidden, kernel, targets, weights, chunk, groups, vocab, split_carry=True):
    """_fused over the rows joined into `groups` long rows; dh back in [B, T, D]."""
    b, t, d = hidden.shape
    groups = groups or b
    if b % groups:
        raise ValueError(f"head_nll_sum: {b} rows do not split into {groups} groups (data shards)")
    join = lambda x: x.reshape(groups, (b // groups) * t, *x.shape[2:])
    vocab = kernel.shape[1] if vocab is None else vocab
    if not 0 < vocab <= kernel.shape[1]:
        raise ValueError(f"head_nll_sum: vocab {vocab} does not fit the kernel's {kernel.shape[1]} columns")
    loss, dh, dw = _fused(join(hidden), kernel, join(targets), join(weights), chunk * (b // groups), vocab,
                          split_carry)
    return loss, dh.reshape(b, t, d), dw


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def head_nll_sum(hidden: jax.Array, kernel: jax.Array, targets: jax.Array, weights: jax.Array,
                 chunk: int = 512, groups: int | None = None, vocab: int | None = None,
                 _split_carry: bool = True) -> jax.Array:
    """sum over [B, T] of weights * NLL(softmax(hidden @ kernel), targets), fp32 scalar.

    hidden [B, T, D] (compute dtype), kernel [D, V], targets int [B, T], weights [B, T] (0 = not trained; treated
    as constants: no gradient flows to them). chunk: slots per original row in each chunk. groups: the data shards
    the rows are split over (dp×fsdp; B must divide by it), rows being joined only within one; None keeps every row
    apart (safe under any sharding). vocab: the real vocabulary when the kernel's columns are padded (None: all
    columns are real). The forward pass already computes the gradients, so this is for training; to only score,
    use `loss.token_nll` on the model's logits. `_split_carry=False`: the weight gradient's fp32 carry is left to
    GSPMD, which kept it whole on every device (for measuring that only)."""
    return _grouped(hidden, kernel, targets, weights, chunk, groups, vocab, _split_carry)[0]


def _fwd(hidden, kernel, targets, weights, chunk, groups, vocab, split_carry):
    loss, dh, dw = _grouped(hidden, kernel, targets, weights, chunk, groups, vocab, split_carry)
    return loss, (dh.astype(hidden.dtype), dw.astype(kernel.dtype))


def _bwd(chunk, groups, vocab, split_carry, res, g):
    dh, dw = res
    g = g.astype(jnp.float32)
    return (dh * g.astype(dh.dtype), dw * g.astype(dw.dtype), None, None)


head_nll_sum.defvjp(_fwd, _bwd)
