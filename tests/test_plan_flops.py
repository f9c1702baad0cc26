"""Analytic step FLOPs: a hand count for a tiny config, and XLA's own count of a fully unrolled CPU step."""
import jax
import pytest

from camel_jax.model.config import get_preset
from camel_jax.model.mesh import build_mesh
from camel_jax.plan.flops import step_flops
from camel_jax.train.optimizer import make_optimizer
from camel_jax.train.step import lower_train_step


def test_hand_count_tiny_mha():
    # tiny-mha: d=64, f=176, 2 layers, 4 heads of 16, vocab 256 (already a multiple of 128); 2 rows of 8 slots.
    f = step_flops(get_preset("tiny-mha"), rows=2, seq_len=8)
    tokens = 16
    assert f.tokens == tokens
    assert f.qkv == 6 * tokens * 2 * (3 * 64 * 64)  # 6 = 2 FLOPs per multiply-add x (forward + 2 backward)
    assert f.attn_out == 6 * tokens * 2 * (64 * 64)
    assert f.mlp == 6 * tokens * 2 * (3 * 64 * 176)
    assert f.head == 6 * tokens * 64 * 256
    assert f.attention == 3 * 2 * 2 * (4 * 8 * 8 * 4 * 16) / 2  # rows x layers x QK^T+PV over half the keys
    assert f.total == 11_206_656 + 98_304
    assert f.recompute == 0 and f.hardware == f.total


def test_gqa_and_padded_vocab_and_remat():
    cfg = get_preset("tiny-gqa", vocab_size=200, remat="full")  # 2 kv heads; vocab padded to 256
    f = step_flops(cfg, rows=1, seq_len=4)
    assert f.qkv == 6 * 4 * 2 * 64 * (4 + 2 * 2) * 16
    assert f.head == 6 * 4 * 64 * 256
    assert f.recompute == pytest.approx((f.qkv + f.attn_out + f.mlp + f.attention) / 3)  # one more forward


def test_llama_7b_is_6n_plus_attention():
    cfg = get_preset("llama-7b")
    f = step_flops(cfg, rows=128, seq_len=2048)
    assert f.total == pytest.approx(cfg.flops_per_token(2048) * 128 * 2048, rel=1e-4)  # norms are the difference
    assert f.total / f.tokens / 6 / 6.6e9 == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_xla_counts_the_same_matmuls(remat):
    """On CPU, unrolled (no scan body counted once) with plain attention (which computes every key, masked ones
    too): XLA's cost_analysis is the analytic count with full attention, plus a few % of elementwise work."""
    cfg = get_preset("tiny-mha", attention="dot", scan_unroll=2, dtype="float32", remat=remat)
    mesh = build_mesh("fsdp1", cfg, devices=jax.devices()[:1])
    cost = lower_train_step(cfg, make_optimizer(), mesh, 1, 2, 64, loss_chunk=0).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    f = step_flops(cfg, 2, 64)
    masked = f.attention * (1 + (remat == "full") / 3)  # the masked half of the scores, computed all the same
    computed = f.hardware + masked
    assert 1.0 <= cost["flops"] / computed < 1.08, (cost["flops"], computed)
