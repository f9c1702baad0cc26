"""infer.paged: the Pallas paged-attention kernel over the engine's cache equals grouped attention (through Pallas'
TPU interpreter here), the engine decodes the same tokens with it, and the decode step with the kernel compiles for a
TPU v5e topology on a dp2,mp2 mesh (compiled, not run; skipped without libtpu)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tpu_util import tpu_devices

from camel_jax.infer import decode
from camel_jax.infer.engine import Engine, Request
from camel_jax.infer.paged import page_size, paged_decode_attention
from camel_jax.model import partition
from camel_jax.model.config import get_preset
from camel_jax.model.llama import init_params

CFG = get_preset("tiny-gqa", dtype="float32")


def test_page_size_divides_the_cache():
    assert page_size(384) == 128 and page_size(96) == 32 and page_size(40) == 8 and page_size(100) is None
    with pytest.raises(ValueError, match="divisible by one of"):
        paged_decode_attention(jnp.zeros((1, 4, 8)), jnp.zeros((2, 1, 100, 8)), jnp.zeros((2, 1, 100, 8)),
                               jnp.ones(1, jnp.int32))


def test_the_kernel_equals_grouped_attention():
    """Rows of lengths 1, a page and a bit, and the whole cache; kv heads shared by 4 query heads. The kernel
    rounds k and v to bf16 before its dots, so the reference gets them rounded too."""
    rng = np.random.default_rng(0)
    b, h, kvh, s, hd = 3, 8, 2, 64, 16
    q = jnp.asarray(rng.normal(size=(b, h, hd)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(kvh, b, s, hd)), jnp.bfloat16).astype(jnp.float32) for _ in range(2))
    lengths = jnp.asarray([1, 37, 64], jnp.int32)
    out = jax.jit(functools.partial(paged_decode_attention, interpret=True))(q, k, v, lengths)
    ref = decode.grouped_attention(q, k, v, jnp.arange(s)[None] < lengths[:, None])
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


@pytest.fixture(scope="module")
def params():
    p = jax.jit(lambda k: init_params(CFG, k))(jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x * 4.0 if x.ndim > 1 else x, p)  # peaked logits: no argmax ties


def test_the_engine_decodes_the_same_tokens_with_the_kernel(params):
    reqs = [Request([1, 17, 42, 99, 3], 6, ignore_eos=True), Request([1, 200], 9, ignore_eos=True),
            Request(list(range(1, 40)), 4, ignore_eos=True)]
    dense = Engine(params, CFG, slots=2, max_len=64, decode_attention="dense").run(reqs)
    paged = Engine(params, CFG, slots=2, max_len=64, decode_attention="paged_interpret").run(reqs)
    assert [o[0].tokens for o in paged] == [o[0].tokens for o in dense]
    with pytest.raises(ValueError, match="decode_attention must be one of"):
        Engine(params, CFG, slots=2, max_len=64, decode_attention="flash")
    with pytest.raises(ValueError, match="needs max_len divisible"):
        Engine(params, CFG, slots=2, max_len=60, decode_attention="paged")


def test_the_step_compiles_for_tpu_with_the_paged_kernel():
    from camel_jax.model.mesh import build_mesh

    # head_dim 128, as the kernel's TPU lowering needs (LLaMA's); 4 query heads on 2 kv heads
    cfg = get_preset("tiny-gqa", dtype="bfloat16", hidden_size=512, intermediate_size=256)
    mesh = build_mesh("dp2,mp2", cfg, devices=tpu_devices())
    weights = jax.eval_shape(lambda: decode.serving_weights(init_params(cfg, jax.random.PRNGKey(0)), cfg))
    cache = jax.eval_shape(lambda: decode.empty_cache(cfg, 4, 256, blocks=decode.cache_blocks(256, paged=True),
                                                      kt=False))  # the kernel's [S, hd] pages
    state = jax.eval_shape(lambda: decode.empty_state(4, 2, 4))

    def placed(tree, names):
        return jax.tree.map(lambda x, n: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=jax.sharding.NamedSharding(
            mesh, partition.to_mesh_axes(n, partition.SERVE_RULES, mesh.axis_names))), tree, names)

    specs = decode.param_logical_specs(cfg)
    wnames = {"embed": tuple(specs["embed"]["embedding"]), "head": tuple(specs["lm_head"]["kernel"]),
              "final_norm": tuple(specs["final_norm"]["scale"]),
              "layers": [jax.tree.map(lambda s: tuple(s)[1:], specs["layers"],
                                      is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))] * cfg.num_layers}
    weights = placed(weights, wnames)
    cache = placed(cache, [{"k": [partition.CACHE], "v": [partition.CACHE]}] * cfg.num_layers)
    state = placed(state, {k: ("cache_batch",) + (None,) * (len(v.shape) - 1) for k, v in state.items()})

    def step(w, c, s):
        with partition.rules(partition.SERVE_RULES):
            return decode.decode_step(w, c, s, cfg=cfg, window=256, paged="kernel")
    with jax.set_mesh(mesh):
        lowered = jax.jit(step, donate_argnums=(1, 2)).lower(weights, cache, state)
    assert "paged_flash_attention_kernel" in lowered.as_text()
    assert "tpu_custom_call" in lowered.compile().as_text()
