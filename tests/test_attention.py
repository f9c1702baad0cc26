"""Attention cores: block-sparse self-attention equals plain masked attention (values and gradients of real
queries) on packed, padded and single-segment rows, GQA included; the block plan is the exact one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.model.attention import block_sparse_attention, dot_attention, key_block_starts
from rows_util import LAYOUTS, length, rows as _rows, self_mask as _mask


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kv", [4, 2, 1])
def test_block_sparse_equals_masked_attention(layout, kv):
    t, h, hd = length(layout), 4, 8
    seg = _rows(LAYOUTS[layout], t)
    rng = np.random.RandomState(kv)
    q = jnp.asarray(rng.randn(2, t, h, hd), jnp.float32)
    k, v = (jnp.asarray(rng.randn(2, t, kv, hd), jnp.float32) for _ in range(2))
    dy = jnp.asarray(rng.randn(2, t, h, hd), jnp.float32)
    mask = _mask(seg)
    real = jnp.asarray(seg != 0)[:, :, None, None]  # padding queries' outputs are never used

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.where(real, fn(q, k, v), 0.0) * dy)

    ref, gref = jax.value_and_grad(loss(lambda q, k, v: dot_attention(q, k, v, mask)), argnums=(0, 1, 2))(q, k, v)
    starts = key_block_starts(mask)
    got, ggot = jax.jit(jax.value_and_grad(loss(lambda q, k, v: block_sparse_attention(q, k, v, mask, starts)),
                                           argnums=(0, 1, 2)))(q, k, v)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(ggot, gref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=0)


def test_key_block_starts_is_the_first_block_any_query_needs():
    # Row 0: segments [0,30) [30,100) [100,250) [250,340) [340,512); row 1: [0,260) [260,300) ... [380,480) [480,512).
    seg = _rows(LAYOUTS["packed"], 512)
    starts = np.asarray(key_block_starts(_mask(seg), block=128))
    # Blocks 1 and 2 hold slots of row 1's first segment [0, 260) -> block 0. Block 3 (384..511): row 0's [340, 512)
    # -> block 2 (row 1's [380, 480) also starts in block 2).
    assert starts.tolist() == [0, 0, 0, 2]
    assert np.asarray(key_block_starts(_mask(seg[:1]), block=128)).tolist() == [0, 0, 1, 2]  # row 0 alone
    one = np.asarray(key_block_starts(_mask(_rows(LAYOUTS["one_segment"], 512)), block=128))
    assert one.tolist() == [0, 0, 0, 0]
    pad = np.zeros((1, 512), np.int32)
    pad[0, :100] = 1  # blocks 1..3 are all padding: they need no earlier key block
    assert np.asarray(key_block_starts(_mask(pad), block=128)).tolist() == [0, 1, 2, 3]


def test_block_sparse_on_a_mesh_matches_one_device():
    """Rows split over dp×fsdp and heads over mp (the partition rules' layout): same values and gradients."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    from camel_jax.model.mesh import build_mesh
    from camel_jax.model.config import get_preset

    t, h, kv, hd = 384, 4, 2, 8
    seg = _rows([[30, 200, 154], [384], [100, 100, 100, 84], [-50, 334]], t)
    rng = np.random.RandomState(5)
    q = jnp.asarray(rng.randn(4, t, h, hd), jnp.float32)
    k, v = (jnp.asarray(rng.randn(4, t, kv, hd), jnp.float32) for _ in range(2))
    dy = jnp.asarray(rng.randn(4, t, h, hd), jnp.float32)
    mask = _mask(seg)
    real = jnp.asarray(seg != 0)[:, :, None, None]

    def grads(q, k, v, mask):
        loss = lambda q, k, v: jnp.sum(jnp.where(real, block_sparse_attention(q, k, v, mask, key_block_starts(mask)),
                                                 0.0) * dy)
        return jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v)

    ref, gref = jax.jit(grads)(q, k, v, mask)
    mesh = build_mesh("dp2,fsdp2,mp2", get_preset("tiny-gqa"))
    heads = NamedSharding(mesh, P(("dp", "fsdp"), None, "mp", None))
    args = [jax.device_put(x, heads) for x in (q, k, v)] + [
        jax.device_put(mask, NamedSharding(mesh, P(("dp", "fsdp"), None, None, None)))]
    with jax.set_mesh(mesh):
        got, ggot = jax.jit(grads)(*args)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(ggot, gref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)
