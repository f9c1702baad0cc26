"""Partition rules: every leaf has a rule, shards have the shapes the rule says, and sharded logits equal unsharded."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from camel_jax.model.mesh import build_mesh
from camel_jax.model.llama import Llama, init_params
from camel_jax.model.config import LlamaConfig
from camel_jax.model.partition import batch_spec, spec_for, tree_shardings, tree_specs

# Heads, kv heads, widths and vocab all divide by 8 so every mesh below is legal.
CFG = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=8,
                  num_kv_heads=8, max_seq_len=64, dtype="float32")
GQA = CFG.replace(num_kv_heads=2)


def _tokens(cfg, batch=8, length=16):
    return jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, length)), jnp.int32)


@pytest.mark.parametrize("spec, cfg, length", [("dp8", CFG, 16), ("fsdp8", CFG, 16), ("mp8", CFG, 16),
                                               ("dp2,fsdp2,mp2", GQA, 16),
                                               ("dp2,fsdp2,mp2", GQA, 256), ("mp8", CFG, 256)])  # block-sparse path
def test_sharded_logits_equal_unsharded(spec, cfg, length):
    params = init_params(cfg, jax.random.PRNGKey(1))
    tokens = _tokens(cfg, length=length)
    ref, _ = jax.jit(lambda p, t: Llama(cfg).apply({"params": p}, t))(params, tokens)
    mesh = build_mesh(spec, cfg, batch=tokens.shape[0])
    shardings = tree_shardings(params, mesh)
    sharded = jax.device_put(params, shardings)
    toks = jax.device_put(tokens, NamedSharding(mesh, batch_spec()))
    with jax.set_mesh(mesh):
        out, _ = jax.jit(lambda p, t: Llama(cfg).apply({"params": p}, t))(sharded, toks)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["dp8", "fsdp8", "mp8", "dp2,fsdp2,mp2"])
def test_shard_shapes_follow_rules(spec):
    params = init_params(CFG, jax.random.PRNGKey(0))
    mesh = build_mesh(spec, CFG)
    sharded = jax.device_put(params, tree_shardings(params, mesh))
    specs = tree_specs(params)
    for (path, leaf), spec_ in zip(jax.tree_util.tree_leaves_with_path(sharded), jax.tree.leaves(
            specs, is_leaf=lambda x: isinstance(x, P))):
        expected = list(leaf.shape)
        for dim, entry in enumerate(spec_):
            names = entry if isinstance(entry, tuple) else (entry,) if entry else ()
            for n in names:
                expected[dim] //= mesh.shape[n]
        for shard in leaf.addressable_shards:
            assert list(shard.data.shape) == expected, (jax.tree_util.keystr(path), spec_)


def test_rules_cover_model_tree():
    specs = tree_specs(init_params(CFG, jax.random.PRNGKey(0)))
    assert specs["layers"]["attn"]["q"]["kernel"] == P(None, "fsdp", "mp")
    assert specs["layers"]["attn"]["o"]["kernel"] == P(None, "mp", "fsdp")
    assert specs["layers"]["mlp"]["down"]["kernel"] == P(None, "mp", "fsdp")
    assert specs["embed"]["embedding"] == P("mp", "fsdp")
    assert specs["lm_head"]["kernel"] == P("fsdp", "mp")
    assert specs["final_norm"]["scale"] == P(None)


def test_optimizer_moments_inherit_param_rules():
    import optax

    params = init_params(CFG, jax.random.PRNGKey(0))
    state = {"params": params, "opt_state": optax.adamw(1e-3).init(params), "step": jnp.int32(0)}
    specs = tree_specs(state)
    mu = specs["opt_state"][0].mu
    assert mu["layers"]["mlp"]["gate"]["kernel"] == P(None, "fsdp", "mp")
    assert specs["step"] == P()


def test_unmatched_parameter_is_an_error():
    with pytest.raises(ValueError, match="no partition rule matches parameter 'params/adapter/kernel'"):
        tree_specs({"params": {"adapter": {"kernel": jnp.zeros((4, 4))}}})
    with pytest.raises(ValueError, match="expects rank 2"):
        spec_for("layers/attn/q/kernel", (2, 3, 4, 5))
