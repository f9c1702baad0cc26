"""The sharding vocabulary: every parameter is named where it is made, the training table maps the names to the mesh,
shards have the shapes the table says, and sharded logits equal unsharded."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from camel_jax.model.mesh import build_mesh
from camel_jax.model.llama import Llama, init_params, param_logical_specs, param_shardings
from camel_jax.model.config import LlamaConfig
from camel_jax.model import partition
from camel_jax.model.partition import TRAIN_RULES, batch_sharding, logical_specs, to_mesh_axes

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
    sharded = jax.device_put(params, param_shardings(cfg, mesh))
    toks = jax.device_put(tokens, batch_sharding(mesh, 2))
    with jax.set_mesh(mesh):
        out, _ = jax.jit(lambda p, t: Llama(cfg).apply({"params": p}, t))(sharded, toks)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["dp8", "fsdp8", "mp8", "dp2,fsdp2,mp2"])
def test_shard_shapes_follow_rules(spec):
    params = init_params(CFG, jax.random.PRNGKey(0))
    mesh = build_mesh(spec, CFG)
    sharded = jax.device_put(params, param_shardings(CFG, mesh))
    specs = jax.tree.map(lambda s: s.spec, param_shardings(CFG, mesh))
    for (path, leaf), spec_ in zip(jax.tree_util.tree_leaves_with_path(sharded), jax.tree.leaves(
            specs, is_leaf=lambda x: isinstance(x, P))):
        expected = list(leaf.shape)
        for dim, entry in enumerate(spec_):
            names = entry if isinstance(entry, tuple) else (entry,) if entry else ()
            for n in names:
                expected[dim] //= mesh.shape[n]
        for shard in leaf.addressable_shards:
            assert list(shard.data.shape) == expected, (jax.tree_util.keystr(path), spec_)


def test_layers_name_every_parameter_and_the_table_maps_them():
    logical = param_logical_specs(CFG)
    assert logical["layers"]["attn"]["q"]["kernel"] == P("layers", "embed", "heads")
    assert logical["embed"]["embedding"] == P("vocab", "embed")
    specs = jax.tree.map(lambda s: to_mesh_axes(tuple(s), TRAIN_RULES), logical, is_leaf=lambda x: isinstance(x, P))
    assert specs["layers"]["attn"]["q"]["kernel"] == P(None, "fsdp", "mp")
    assert specs["layers"]["attn"]["k"]["kernel"] == P(None, "fsdp", "mp")
    assert specs["layers"]["attn"]["o"]["kernel"] == P(None, "mp", "fsdp")
    assert specs["layers"]["mlp"]["down"]["kernel"] == P(None, "mp", "fsdp")
    assert specs["embed"]["embedding"] == P("mp", "fsdp")
    assert specs["lm_head"]["kernel"] == P("fsdp", "mp")
    assert specs["final_norm"]["scale"] == P(None)
    assert to_mesh_axes(("batch", "seq", "act_heads", "head_dim"), TRAIN_RULES) == P(("dp", "fsdp"), None, "mp", None)


def test_another_workload_is_another_table():
    """The same model laid out by a different table (as serving will be): parameters follow it, nothing else
    changes. Here: no fsdp, the vocabulary replicated."""
    serve = partition.override(TRAIN_RULES, embed=None, vocab=None, act_vocab=None)
    with pytest.raises(ValueError, match=r"names \['experts'\] are not in the table"):
        partition.override(TRAIN_RULES, experts="mp")
    mesh = build_mesh("dp2,fsdp2,mp2", GQA)
    with partition.rules(serve):
        sh = param_shardings(GQA, mesh)
    assert sh["embed"]["embedding"].spec == P(None, None)
    assert sh["layers"]["attn"]["q"]["kernel"].spec == P(None, None, "mp")
    assert param_shardings(GQA, mesh)["embed"]["embedding"].spec == P("mp", "fsdp")  # training's outside it


def test_mesh_axes_the_mesh_lacks_are_dropped():
    assert to_mesh_axes(("batch", "seq"), TRAIN_RULES, mesh_axes=("fsdp", "mp")) == P("fsdp", None)
    assert to_mesh_axes(("batch", "act_heads"), TRAIN_RULES, mesh_axes=("dp",)) == P("dp", None)


def test_optimizer_moments_inherit_param_names():
    from camel_jax.train.optimizer import make_optimizer
    from camel_jax.train.state import state_logical_specs

    specs = state_logical_specs(CFG, make_optimizer(1e-3, 10))
    moments = [s for s in jax.tree.leaves(specs["opt_state"], is_leaf=lambda x: hasattr(x, "mu"))
               if hasattr(s, "mu")]
    assert moments and moments[0].mu["layers"]["mlp"]["gate"]["kernel"] == P("layers", "embed", "mlp")
    assert moments[0].nu["lm_head"]["kernel"] == P("embed", "vocab")
    assert specs["step"] == P() and specs["rng"] == P()


def test_unnamed_parameters_and_unknown_names_are_errors():
    unnamed = {"params": {"adapter": {"kernel": jax.ShapeDtypeStruct((4, 4), jnp.float32)}}}
    with pytest.raises(ValueError, match="parameter 'params/adapter/kernel' .* has no logical axis names"):
        logical_specs(unnamed)
    with pytest.raises(ValueError, match=r"logical axis names \['experts'\] are not in the sharding rule table"):
        to_mesh_axes(("batch", "experts"), TRAIN_RULES)
