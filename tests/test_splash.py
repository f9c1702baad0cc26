"""The TPU attention path: JAX's splash kernel under camel_jax's masking rule, checked on CPU through Pallas'
interpreter (values and gradients of real queries against plain masked attention, alone and split over a mesh,
and inside the model), and compiled for a real TPU topology when libtpu is installed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.model.attention import dot_attention
from camel_jax.model.config import get_preset
from camel_jax.model.splash import splash_attention
from rows_util import LAYOUTS, length, positions, rows, self_mask
from tpu_util import tpu_devices


def _qkv(b, t, h, kv, hd, seed):
    rng = np.random.RandomState(seed)
    q = jnp.asarray(rng.randn(b, t, h, hd), jnp.float32)
    k, v = (jnp.asarray(rng.randn(b, t, kv, hd), jnp.float32) for _ in range(2))
    return q, k, v, jnp.asarray(rng.randn(b, t, h, hd), jnp.float32)


def _value_and_grads(fn, seg, dy):
    real = jnp.asarray(seg != 0)[:, :, None, None]  # padding queries' outputs are never used
    loss = lambda q, k, v: jnp.sum(jnp.where(real, fn(q, k, v), 0.0) * dy)
    return jax.value_and_grad(loss, argnums=(0, 1, 2))


CASES = [(layout, 2) for layout in sorted(LAYOUTS)] + [("packed", 4), ("packed", 1)]


@pytest.mark.parametrize("layout,kv", CASES)
def test_splash_equals_masked_attention(layout, kv):
    t, h, hd = length(layout), 4, 8
    seg = rows(LAYOUTS[layout], t)
    q, k, v, dy = _qkv(2, t, h, kv, hd, seed=kv)
    mask = self_mask(seg)
    ref, gref = _value_and_grads(lambda q, k, v: dot_attention(q, k, v, mask), seg, dy)(q, k, v)
    got, ggot = jax.jit(_value_and_grads(
        lambda q, k, v: splash_attention(q, k, v, jnp.asarray(seg), interpret=True), seg, dy))(q, k, v)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(ggot, gref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=0)


def test_splash_on_a_mesh_matches_one_device():
    """Under dp2,fsdp2,mp2 the kernel runs in shard_map (rows over dp×fsdp, heads over mp): same values, grads."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from camel_jax.model.mesh import build_mesh

    t, h, kv, hd = 256, 4, 2, 8
    seg = rows([[30, 200, 26], [256], [100, 100, 56], [-50, 206]], t)
    q, k, v, dy = _qkv(4, t, h, kv, hd, seed=5)
    fn = lambda q, k, v, s: splash_attention(q, k, v, s, interpret=True)
    grads = lambda q, k, v, s: _value_and_grads(lambda q, k, v: fn(q, k, v, s), seg, dy)(q, k, v)
    ref, gref = jax.jit(grads)(q, k, v, jnp.asarray(seg))
    mesh = build_mesh("dp2,fsdp2,mp2", get_preset("tiny-gqa"))
    heads = NamedSharding(mesh, P(("dp", "fsdp"), None, "mp", None))
    args = [jax.device_put(x, heads) for x in (q, k, v)] + [
        jax.device_put(jnp.asarray(seg), NamedSharding(mesh, P(("dp", "fsdp"), None)))]
    with jax.set_mesh(mesh):
        got, ggot = jax.jit(grads)(*args)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(ggot, gref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)


def test_model_with_splash_gives_the_same_logits():
    from camel_jax.model.llama import Llama, init_params

    cfg = get_preset("tiny-gqa", dtype="float32", param_dtype="float32", max_seq_len=256)
    params = init_params(cfg, jax.random.PRNGKey(0))
    seg = rows([[100, 150, -6], [-30, 226]], 256)
    pos = positions(seg)
    tokens = jnp.asarray(np.random.RandomState(0).randint(3, cfg.vocab_size, seg.shape))

    def logits(attention):
        model = Llama(cfg.replace(attention=attention))
        out, _ = jax.jit(lambda p: model.apply({"params": p}, tokens, positions=jnp.asarray(pos),
                                               segment_ids=jnp.asarray(seg)))(params)
        return np.asarray(out)[seg != 0]

    np.testing.assert_allclose(logits("splash_interpret"), logits("dot"), atol=1e-5, rtol=0)


def test_attention_choice_follows_the_platform():
    cfg = get_preset("tiny-gqa")
    assert cfg.attention == "auto"
    assert cfg.for_platform("tpu").attention == "splash"
    assert cfg.for_platform("cpu").attention == "block_sparse"
    assert cfg.replace(attention="splash").for_platform("cpu").attention == "splash_interpret"
    assert cfg.replace(attention="dot").for_platform("tpu").attention == "dot"
    with pytest.raises(ValueError, match="attention must be one of"):
        cfg.replace(attention="flash").validate()


@pytest.mark.parametrize("remat,forward_kernels", [("save_dots", 1), ("full", 2)])
def test_train_step_compiles_for_tpu_with_the_splash_kernel(remat, forward_kernels):
    """On a TPU topology (compiled here, not run) "auto" picks the Mosaic kernel, split over fsdp2,mp2. Under
    save_dots the kernel's residuals are kept, so its forward runs once; full remat runs it again in the backward."""
    import re

    from camel_jax.model.mesh import build_mesh
    from camel_jax.train.optimizer import make_optimizer
    from camel_jax.train.step import lower_train_step

    cfg = get_preset("tiny-gqa", remat=remat)
    mesh = build_mesh("fsdp2,mp2", cfg, devices=tpu_devices())
    lowered = lower_train_step(cfg, make_optimizer(total_steps=10), mesh, grad_accum=1, micro_rows=4, seq_len=128)
    kernels = re.findall(r'kernel_name = "(splash_[a-z_]+)"', lowered.as_text())
    assert sum("_fwd_" in k for k in kernels) == forward_kernels, kernels
    assert sum("_dq_" in k for k in kernels) == sum("_dkv_" in k for k in kernels) == 1, kernels
    if remat == "save_dots":
        assert "tpu_custom_call" in lowered.compile().as_text()
