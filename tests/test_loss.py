"""Masked cross-entropy and the `token` / `micro_mean` reductions on known masks, against hand-computed values."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.train.loss import loss_weights, reduce_sums, token_nll, token_nll_sums

# Every position has logits log([1, 2, 3]): p = [1/6, 2/6, 3/6], so NLL(target k) = log(6 / (k + 1)).
NLL = {0: math.log(6), 1: math.log(3), 2: math.log(2)}


def _logits(shape):
    return jnp.broadcast_to(jnp.log(jnp.array([1.0, 2.0, 3.0])), (*shape, 3))


# Two accumulation steps (A=2) of two rows (R=2) of three tokens.
TARGETS = np.array([[[0, 1, 2], [1, 1, 1]],
                    [[2, 2, 2], [1, 0, 0]]], np.int32)
MASK = np.array([[[1, 1, 0], [0, 0, 0]],
                 [[1, 1, 1], [0, 0, 1]]], np.float32)


def _weighted_loss(mask, reduction, rows=None):
    w, scale = loss_weights(jnp.asarray(mask), reduction, rows)
    nll = token_nll(_logits(mask.shape), jnp.asarray(TARGETS.reshape(mask.shape)))
    return float(scale * jnp.sum(nll * w))


def test_token_nll_and_sums_by_hand():
    nll = np.asarray(token_nll(_logits(TARGETS.shape), jnp.asarray(TARGETS)))
    np.testing.assert_allclose(nll, np.vectorize(NLL.get)(TARGETS), rtol=1e-6)
    s, n = token_nll_sums(_logits((2, 3)), jnp.asarray(TARGETS[0]), jnp.asarray(MASK[0]))
    np.testing.assert_allclose(float(s), NLL[0] + NLL[1], rtol=1e-6)
    assert float(n) == 2.0
    # bf16 logits are promoted to float32 before the softmax
    s16, _ = token_nll_sums(_logits((2, 3)).astype(jnp.bfloat16), jnp.asarray(TARGETS[0]), jnp.asarray(MASK[0]))
    assert s16.dtype == jnp.float32


def test_token_reduction_is_the_global_token_mean():
    want = (NLL[0] + NLL[1] + 3 * NLL[2] + NLL[0]) / 6
    np.testing.assert_allclose(_weighted_loss(MASK, "token"), want, rtol=1e-6)
    # The split into accumulation steps does not matter.
    np.testing.assert_allclose(_weighted_loss(MASK.reshape(1, 4, 3), "token"), want, rtol=1e-6)
    sums = [NLL[0] + NLL[1], 3 * NLL[2] + NLL[0]]
    np.testing.assert_allclose(float(reduce_sums(jnp.array(sums), jnp.array([2, 4]), "token")), want, rtol=1e-6)


def test_micro_mean_is_the_mean_of_micro_batch_means():
    want = ((NLL[0] + NLL[1]) / 2 + (3 * NLL[2] + NLL[0]) / 4) / 2
    np.testing.assert_allclose(_weighted_loss(MASK, "micro_mean"), want, rtol=1e-6)
    sums = [NLL[0] + NLL[1], 3 * NLL[2] + NLL[0]]
    np.testing.assert_allclose(float(reduce_sums(jnp.array(sums), jnp.array([2, 4]), "micro_mean")), want, rtol=1e-6)
    assert abs(want - _weighted_loss(MASK, "token")) > 1e-3  # uneven masks: the two reductions differ


def test_micro_mean_per_row_groups_skip_empty_rows():
    # micro_mean_rows=1: each row is its own mean (open-instruct with 1 example per device); row [0,0,0] is left out.
    want = ((NLL[0] + NLL[1]) / 2 + NLL[2] + NLL[0]) / 3
    np.testing.assert_allclose(_weighted_loss(MASK, "micro_mean", 1), want, rtol=1e-6)


def test_micro_batch_with_zero_tokens():
    mask = MASK.copy()
    mask[0] = 0.0  # first accumulation step has no trained token
    only_second = (3 * NLL[2] + NLL[0]) / 4
    np.testing.assert_allclose(_weighted_loss(mask, "micro_mean"), only_second, rtol=1e-6)
    np.testing.assert_allclose(_weighted_loss(mask, "token"), only_second, rtol=1e-6)
    np.testing.assert_allclose(float(reduce_sums(jnp.array([0.0, 3 * NLL[2] + NLL[0]]), jnp.array([0, 4]),
                                                 "micro_mean")), only_second, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["token", "micro_mean"])
def test_all_masked_batch_gives_zero_loss_and_zero_grad(reduction):
    mask = np.zeros_like(MASK)

    def f(logits):
        w, scale = loss_weights(jnp.asarray(mask), reduction)
        return scale * jnp.sum(token_nll(logits, jnp.asarray(TARGETS)) * w)

    loss, grad = jax.value_and_grad(f)(_logits(MASK.shape))
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="loss_reduction"):
        loss_weights(jnp.asarray(MASK), "sum")
    with pytest.raises(ValueError, match="does not divide"):
        loss_weights(jnp.asarray(MASK), "micro_mean", 3)
    with pytest.raises(ValueError, match=r"\[A, R, T\]"):
        loss_weights(jnp.zeros((4,)), "token")
