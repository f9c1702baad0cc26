"""Building blocks against their definitions: Linear is nn.Dense on flattened rows (same parameter), RMSNorm and
rotary follow Hugging Face's LLaMA formulas (rotate_half layout), the MLP is SwiGLU."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from camel_jax.model.layers import MLP, Linear, RMSNorm, apply_rotary, rotary_tables
from camel_jax.model.config import get_preset


def test_linear_is_dense_on_any_leading_shape():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 3, 5, 8), jnp.float32)
    lin = Linear(6, jnp.float32, jnp.float32, ("embed", "mlp"))
    boxed = lin.init(jax.random.PRNGKey(0), x)
    assert boxed["params"]["kernel"].names == ("embed", "mlp")  # its logical axes (partition.py)
    params = nn.meta.unbox(boxed)
    assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (8, 6)}}  # nn.Dense's name and layout
    ref = nn.Dense(6, use_bias=False).apply(params, x)
    np.testing.assert_allclose(np.asarray(lin.apply(params, x)), np.asarray(ref), rtol=1e-6, atol=1e-6)
    bf = Linear(6, jnp.bfloat16, jnp.float32, ("embed", "mlp")).apply(params, x)
    assert bf.dtype == jnp.bfloat16 and bf.shape == (2, 3, 5, 6)


def test_rmsnorm_formula():
    x = np.random.RandomState(1).randn(3, 7, 16).astype(np.float32)
    norm = RMSNorm(1e-6, jnp.float32, jnp.float32)
    params = nn.meta.unbox(norm.init(jax.random.PRNGKey(0), x))
    params = {"params": {"scale": jnp.arange(16, dtype=jnp.float32) / 8}}
    ref = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6) * (np.arange(16) / 8)
    np.testing.assert_allclose(np.asarray(norm.apply(params, x)), ref, rtol=1e-5, atol=1e-6)


def test_rotary_is_rotate_half_and_relative():
    hd, theta = 8, 10000.0
    x = np.random.RandomState(2).randn(1, 5, 2, hd).astype(np.float32)
    pos = jnp.arange(5)[None]
    cos, sin = rotary_tables(pos, hd, theta)
    got = np.asarray(apply_rotary(jnp.asarray(x), cos, sin))
    # HF: inv_freq = 1/theta^(2i/d); emb = cat(freqs, freqs); x*cos + rotate_half(x)*sin, rotate_half = [-x2, x1].
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(5)[:, None] * inv[None]
    c, s = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
    ref = x * c[None, :, None] + rot * s[None, :, None]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 0], x[:, 0], atol=1e-7)  # position 0 is the identity
    # Dot products of rotated q/k depend only on the distance: shifting both positions by 3 changes nothing.
    c3, s3 = rotary_tables(pos + 3, hd, theta)
    q, k = jnp.asarray(x[:, :, 0]), jnp.asarray(x[:, :, 1])
    dots = lambda c_, s_: jnp.einsum("btd,bsd->bts", apply_rotary(q[:, :, None], c_, s_)[:, :, 0],
                                     apply_rotary(k[:, :, None], c_, s_)[:, :, 0])
    np.testing.assert_allclose(np.asarray(dots(cos, sin)), np.asarray(dots(c3, s3)), atol=1e-4)


def test_mlp_is_swiglu():
    cfg = get_preset("tiny-mha", dtype="float32")
    x = jnp.asarray(np.random.RandomState(3).randn(2, 4, cfg.hidden_size), jnp.float32)
    params = nn.meta.unbox(MLP(cfg).init(jax.random.PRNGKey(0), x))
    p = params["params"]
    ref = (jax.nn.silu(x @ p["gate"]["kernel"]) * (x @ p["up"]["kernel"])) @ p["down"]["kernel"]
    np.testing.assert_allclose(np.asarray(MLP(cfg).apply(params, x)), np.asarray(ref), rtol=1e-5, atol=1e-5)
