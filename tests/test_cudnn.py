"""model/cudnn.py and `attention="auto"` on GPU: the choice (cuDNN where it takes the model, else block_sparse; never
on ROCm), made from a mocked GPU backend for the model, the train step and the prefill; and the numerics of the exact
call cuDNN gets, run through JAX's XLA implementation on CPU, against plain masked attention (values and gradients,
packed/padded/odd-length rows, grouped kv heads). The cuDNN kernel itself runs only on a GPU: scripts/gpu_check.sh."""
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.infer import decode
from camel_jax.model import cudnn, llama
from camel_jax.model.attention import dot_attention
from camel_jax.model.config import get_preset, platform_of
from camel_jax.train.step import for_mesh
from rows_util import positions, rows, self_mask


def _device(platform, version="", kind=""):
    return types.SimpleNamespace(platform=platform, client=types.SimpleNamespace(platform_version=version),
                                 device_kind=kind)


def test_auto_picks_cudnn_on_nvidia_gpus_where_it_takes_the_model():
    bf16 = get_preset("tiny-gqa", dtype="bfloat16")  # head dim 16
    assert bf16.for_platform("gpu").attention == "cudnn"
    assert bf16.replace(dtype="float16").for_platform("gpu").attention == "cudnn"
    assert bf16.replace(dtype="float32").for_platform("gpu").attention == "block_sparse"  # cuDNN: bf16/fp16 only
    assert bf16.replace(head_dim=12).for_platform("gpu").attention == "block_sparse"  # not a multiple of 8
    assert bf16.replace(head_dim=256).for_platform("gpu").attention == "block_sparse"  # over 128
    assert get_preset("llama-7b").for_platform("gpu").attention == "cudnn"  # bf16 compute, head dim 128
    assert bf16.for_platform("rocm").attention == "block_sparse"
    assert bf16.for_platform("tpu").attention == "splash" and bf16.for_platform("cpu").attention == "block_sparse"
    assert bf16.replace(attention="cudnn").for_platform("cpu").attention == "cudnn_xla"
    assert bf16.replace(attention="cudnn").for_platform("gpu").attention == "cudnn"
    assert bf16.replace(attention="block_sparse").for_platform("gpu").attention == "block_sparse"
    assert platform_of(_device("gpu", "cuda 12080")) == "gpu"
    assert platform_of(_device("gpu", "rocm 6.3.1")) == "rocm"
    assert platform_of(_device("tpu")) == "tpu" and platform_of(_device("tpu", kind="TPU v4")) == "tpu"
    assert platform_of(_device("tpu", kind="TPU v3")) == "tpu_v2v3"  # splash does not compile there
    assert bf16.for_platform("tpu_v2v3").attention == "block_sparse"
    assert bf16.replace(attention="splash").for_platform("tpu_v2v3").attention == "splash"  # asked for: kept
    mesh = types.SimpleNamespace(devices=np.array([_device("gpu", "cuda 12080")] * 2))  # what for_mesh reads
    assert for_mesh(bf16, mesh).attention == "cudnn"


# T = 129 (odd: padded to even for cuDNN, then cut off again), packed with padding after, and left padding.
CASES = {"packed": ([[30, 41, 26, 12], [60, 50]], 2), "left_padding": ([[-40, 89], [-3, 126]], 1)}


@pytest.mark.parametrize("layout", sorted(CASES))
def test_cudnn_call_equals_masked_attention(layout):
    t, (lengths, kv) = 129, CASES[layout]
    seg = rows(lengths, t)
    rng = np.random.RandomState(kv)
    q = jnp.asarray(rng.randn(2, t, 4, 8), jnp.float32)
    k, v = (jnp.asarray(rng.randn(2, t, kv, 8), jnp.float32) for _ in range(2))
    dy = jnp.asarray(rng.randn(2, t, 4, 8), jnp.float32)
    mask = self_mask(seg)
    real = jnp.asarray(seg != 0)[:, :, None, None]  # padding queries' outputs are never used

    def loss(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(jnp.where(real, fn(q, k, v), 0.0) * dy),
                                          argnums=(0, 1, 2)))

    ref, gref = loss(lambda q, k, v: dot_attention(q, k, v, mask))(q, k, v)
    got, ggot = loss(lambda q, k, v: cudnn.cudnn_attention(q, k, v, mask, implementation="xla"))(q, k, v)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(ggot, gref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=0)


@pytest.fixture(scope="module")
def packed_batch():
    cfg = get_preset("tiny-gqa", dtype="bfloat16", param_dtype="float32", max_seq_len=64)
    params = jax.jit(lambda k: llama.init_params(cfg, k))(jax.random.PRNGKey(0))
    seg = rows([[20, 25, -19], [-11, 53]], 64)
    pos = positions(seg)
    tokens = jnp.asarray(np.random.RandomState(0).randint(3, cfg.vocab_size, seg.shape))
    return cfg, params, tokens, jnp.asarray(pos), seg


def test_model_on_a_mocked_gpu_calls_cudnn_and_matches_plain_attention(packed_batch, monkeypatch):
    cfg, params, tokens, pos, seg = packed_batch
    calls = []
    real_dpa = jax.nn.dot_product_attention

    def recording(*args, implementation=None, **kw):  # what a GPU would run, recorded, then run through XLA
        calls.append(dict(implementation=implementation, is_causal=kw.get("is_causal"), mask=kw["mask"].shape,
                          dtype=args[0].dtype))
        return real_dpa(*args, implementation="xla", **kw)

    def logits(attention):
        model = llama.Llama(cfg.replace(attention=attention))
        out, _ = jax.jit(lambda p: model.apply({"params": p}, tokens, positions=pos,
                                               segment_ids=jnp.asarray(seg)))(params)
        return np.asarray(out, np.float32)[seg != 0]

    monkeypatch.setattr(cudnn.jax.nn, "dot_product_attention", recording)
    monkeypatch.setattr(llama, "default_platform", lambda: "gpu")
    got = logits("auto")
    assert calls and all(c == dict(implementation="cudnn", is_causal=True, mask=(2, 1, 64, 64),
                                   dtype=jnp.bfloat16) for c in calls), calls
    monkeypatch.setattr(llama, "default_platform", lambda: "cpu")
    n = len(calls)
    ref = logits("dot")
    assert len(calls) == n  # off GPU, auto never reaches it
    np.testing.assert_allclose(got, ref, atol=0.05, rtol=0)  # bf16 compute on both sides


def test_prefill_through_the_cudnn_call_equals_plain_attention(packed_batch):
    cfg, params = packed_batch[0].replace(dtype="float32"), packed_batch[1]
    w = decode.serving_weights(params, cfg)
    tokens = np.zeros((1, 15), np.int32)  # odd: one padding slot for cuDNN
    tokens[0, :9] = [1, 17, 42, 99, 3, 8, 77, 5, 6]
    outs = {}
    for att in ("cudnn_xla", "dot"):
        c = cfg.replace(attention=att)
        outs[att] = jax.jit(functools.partial(decode.prefill, cfg=c))(w, tokens, np.int32(9))
    np.testing.assert_allclose(np.asarray(outs["cudnn_xla"][0]), np.asarray(outs["dot"][0]), atol=2e-5, rtol=0)
    for (k1, v1), (k2, v2) in zip(outs["cudnn_xla"][1], outs["dot"][1]):
        np.testing.assert_allclose(np.asarray(k1)[:, :9], np.asarray(k2)[:, :9], atol=1e-5)  # the prompt's slots
        np.testing.assert_allclose(np.asarray(v1)[:, :9], np.asarray(v2)[:, :9], atol=1e-5)
