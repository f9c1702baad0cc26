"""The train state: its abstract shapes are the real ones, sharded creation puts every leaf where the partition
rules say (and holds the same values as unsharded creation, to the last bit or so), and bad arguments fail clearly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.model.mesh import build_mesh
from camel_jax.model.config import get_preset
from camel_jax.train.optimizer import make_optimizer
from camel_jax.train.state import (STATE_KEYS, abstract_train_state, init_train_state, sharded_abstract_state,
                                   state_shardings)

CFG = get_preset("tiny-gqa", dtype="float32")
OPT = make_optimizer(total_steps=10)


def test_abstract_state_has_the_real_shapes_without_allocating():
    abstract = abstract_train_state(CFG, OPT)
    real = init_train_state(CFG, OPT, jax.random.PRNGKey(0))
    assert set(abstract) == set(real) == set(STATE_KEYS)
    assert jax.tree.structure(abstract) == jax.tree.structure(real)
    for a, r in zip(jax.tree.leaves(abstract), jax.tree.leaves(real)):
        assert isinstance(a, jax.ShapeDtypeStruct) and (a.shape, a.dtype) == (r.shape, r.dtype)
    assert int(real["step"]) == 0 and real["rng"].dtype == jnp.uint32 and real["rng"].shape == (2,)


def test_sharded_creation_follows_the_rules_and_matches_unsharded():
    mesh = build_mesh("dp2,fsdp2,mp2", CFG)
    shardings = state_shardings(CFG, OPT, mesh)
    state = init_train_state(CFG, OPT, jax.random.PRNGKey(3), shardings=shardings)
    plain = init_train_state(CFG, OPT, jax.random.PRNGKey(3))
    specs = jax.tree.map(lambda s: s.spec, shardings)
    for leaf, spec, ref in zip(jax.tree.leaves(state), jax.tree.leaves(specs, is_leaf=lambda x: isinstance(
            x, jax.sharding.PartitionSpec)), jax.tree.leaves(plain)):
        assert leaf.sharding.spec == spec
        # Same draws; the sharded jit may round the init scaling differently in the last bit.
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(ref), rtol=1e-6, atol=0)
    # The moments follow their parameter: q's kernel [L, D, H*hd] splits D over fsdp and heads over mp.
    q_spec = state["params"]["layers"]["attn"]["q"]["kernel"].sharding.spec
    mu = state["opt_state"]
    assert any(getattr(s, "mu", None) is not None and s.mu["layers"]["attn"]["q"]["kernel"].sharding.spec == q_spec
               for s in jax.tree.leaves(mu, is_leaf=lambda x: hasattr(x, "mu")))
    for leaf in jax.tree.leaves(sharded_abstract_state(CFG, OPT, mesh)):
        assert isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is not None


def test_given_params_are_kept_and_typed_keys_accepted():
    params = init_train_state(CFG, OPT, jax.random.PRNGKey(1))["params"]
    state = init_train_state(CFG, OPT, jax.random.key(7), params=params)
    assert state["params"] is params
    assert state["rng"].dtype == jnp.uint32


def test_bad_arguments_fail_clearly():
    with pytest.raises(TypeError, match="cfg must be a LlamaConfig"):
        init_train_state({"model": "tiny-gqa"}, OPT, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="rng must be a jax.random.PRNGKey"):
        init_train_state(CFG, OPT, jnp.zeros((3,), jnp.int32))
