"""The fused output projection + cross-entropy equals the plain full-logits loss, values and gradients, whatever
the chunking, masks (empty rows, no trained token at all, fractional weights), dtype or mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from camel_jax.model.mesh import build_mesh
from camel_jax.model.config import get_preset
from camel_jax.train.head_loss import head_nll_sum
from camel_jax.train.loss import token_nll

B, T, D, V = 4, 37, 16, 50


def _inputs(seed=0, frac=0.4):
    r = np.random.default_rng(seed)
    h = r.normal(size=(B, T, D)).astype(np.float32)
    w = r.normal(size=(D, V)).astype(np.float32) * 0.3
    targets = r.integers(0, V, (B, T)).astype(np.int32)
    weights = (r.random((B, T)) < frac).astype(np.float32)
    weights[1] = 0.0  # a row without any trained token
    weights[2, :5] *= 0.25  # micro_mean-style fractional weights
    return h, w, targets, weights


def _reference(h, w, targets, weights):
    logits = jnp.dot(h.reshape(-1, D), w, preferred_element_type=jnp.float32).reshape(B, T, V)
    return jnp.sum(token_nll(logits, targets) * weights)


@pytest.mark.parametrize("chunk, groups", [(1, None), (5, None), (8, None), (37, None), (64, None),
                                           (4, 1), (8, 2), (5, 4)])
def test_matches_full_logits_loss_and_gradients(chunk, groups):
    h, w, targets, weights = _inputs()
    ref, (gh, gw) = jax.value_and_grad(_reference, argnums=(0, 1))(h, w, targets, weights)
    got, (fh, fw) = jax.jit(jax.value_and_grad(lambda a, b: head_nll_sum(a, b, targets, weights, chunk, groups),
                                               argnums=(0, 1)))(h, w)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fh), np.asarray(gh), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.asarray(fw), np.asarray(gw), atol=1e-5, rtol=0)
    assert not np.asarray(fh)[1].any()  # untrained slots get exactly zero gradient


def test_scales_by_the_cotangent_and_handles_no_trained_token():
    h, w, targets, weights = _inputs()
    g3 = jax.grad(lambda a: 3.0 * head_nll_sum(a, w, targets, weights, 8))(h)
    g1 = jax.grad(lambda a: head_nll_sum(a, w, targets, weights, 8))(h)
    np.testing.assert_allclose(np.asarray(g3), 3.0 * np.asarray(g1), rtol=1e-6)
    zero = np.zeros_like(weights)
    loss, (gh, gw) = jax.value_and_grad(lambda a, b: head_nll_sum(a, b, targets, zero, 8), argnums=(0, 1))(h, w)
    assert float(loss) == 0.0 and not np.asarray(gh).any() and not np.asarray(gw).any()


def test_bfloat16_hidden_keeps_dtypes():
    h, w, targets, weights = _inputs()
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    got, (gh, gw) = jax.value_and_grad(lambda a, b: head_nll_sum(a, b, targets, weights, 8), argnums=(0, 1))(hb, wb)
    assert got.dtype == jnp.float32 and gh.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
    ref = _reference(hb, wb, targets, weights)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-2)


def test_rows_must_split_into_groups():
    h, w, targets, weights = _inputs()
    with pytest.raises(ValueError, match="4 rows do not split into 3 groups"):
        head_nll_sum(h, w, targets, weights, 8, 3)


def test_sharded_batch_and_vocab_match_one_device():
    h, w, targets, weights = _inputs(seed=3, frac=0.6)
    mesh = build_mesh("dp2,fsdp2,mp2", get_preset("tiny-mha"))
    rows = NamedSharding(mesh, P(("dp", "fsdp"), None))
    args = (jax.device_put(h, NamedSharding(mesh, P(("dp", "fsdp"), None, None))),
            jax.device_put(w, NamedSharding(mesh, P("fsdp", "mp"))),
            jax.device_put(targets, rows), jax.device_put(weights, rows))
    fn = jax.jit(jax.value_and_grad(lambda a, b, t, m: head_nll_sum(a, b, t, m, 8, 4), argnums=(0, 1)))
    with jax.set_mesh(mesh):
        got, (gh, gw) = fn(*args)
    ref, (rh, rw) = jax.value_and_grad(_reference, argnums=(0, 1))(h, w, targets, weights)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gh), np.asarray(rh), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(gw), np.asarray(rw), atol=1e-5, rtol=0)
