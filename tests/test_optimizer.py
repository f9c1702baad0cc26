"""Schedule and AdamW values against hand computations, and against the PyTorch path open-instruct ran."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from camel_jax.train.optimizer import current_lr, lr_schedule, make_optimizer, warmup_steps


def test_warmup_steps_is_open_instructs_floor():
    assert warmup_steps(100, 0.03) == 3
    assert warmup_steps(1000, 0.03) == 30  # 1000 * 0.03 = 30.000000000000004 in floats
    assert warmup_steps(33, 0.03) == 0
    assert warmup_steps(34, 0.03) == 1
    with pytest.raises(ValueError, match="total_steps"):
        warmup_steps(0, 0.03)
    with pytest.raises(ValueError, match="warmup_ratio"):
        warmup_steps(10, 1.5)


@pytest.mark.parametrize("step,expected", [
    (0, 0.0), (1, 1 / 3), (2, 2 / 3), (3, 1.0), (50, 50 / 97), (96, 4 / 97), (99, 1 / 97), (100, 0.0), (150, 0.0)])
def test_schedule_with_warmup(step, expected):
    sched = lr_schedule(100, 0.03, 2e-5)  # warmup = 3, decay over 97 steps
    np.testing.assert_allclose(float(sched(step)), 2e-5 * expected, rtol=1e-6, atol=1e-15)


def test_schedule_without_warmup_starts_at_peak():
    sched = lr_schedule(10, 0.03, 1e-3)  # int(0.3) = 0 warmup steps
    np.testing.assert_allclose([float(sched(s)) for s in (0, 5, 9, 10)], [1e-3, 5e-4, 1e-4, 0.0], rtol=1e-6)


def test_schedule_matches_transformers():
    pytest.importorskip("torch")
    tfo = pytest.importorskip("transformers.optimization")
    import torch
    for total, ratio in ((100, 0.03), (1000, 0.03), (37, 0.1), (20, 0.0)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ref = tfo.get_linear_schedule_with_warmup(opt, warmup_steps(total, ratio), total).lr_lambdas[0]
        sched = lr_schedule(total, ratio, 1.0)
        for s in range(total + 2):
            np.testing.assert_allclose(float(sched(s)), ref(s), rtol=2e-7, atol=1e-7, err_msg=f"T={total} s={s}")


# optax forms the bias corrections 1 - b**t with b**t rounded to float32, where 1 - 0.999**2 loses ~1e-5
# relative to cancellation (torch uses Python floats). The hand computation models that rounding, which
# reproduces optax to ~1e-7; against torch itself the agreement is ~1e-5 relative of the update in early steps.
def _f32_bias_correction(b, t):
    return 1.0 - float(np.float32(np.float32(b) ** t))


def _adamw_hand(p, grads, lrs, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    """Torch AdamW written out in float64 (except the float32 bias corrections above)."""
    p = np.asarray(p, np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / _f32_bias_correction(b1, t), v / _f32_bias_correction(b2, t)
        p = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * p)
    return p


def _run(tx, p, grads):
    params = {"w": jnp.asarray(p, jnp.float32)}
    state = tx.init(params)
    lrs = []
    for g in grads:
        upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, upd)
        lrs.append(float(current_lr(state)))
    return np.asarray(params["w"]), lrs


def test_adamw_updates_match_hand_computation():
    p0 = [1.0, -2.0, 3.0, 0.5]
    grads = [[0.1, -0.2, 0.05, 0.0], [0.3, 0.1, -0.4, 0.2], [-0.05, 0.02, 0.01, -0.3]]
    tx = make_optimizer(peak_lr=0.1, total_steps=10, warmup_ratio=0.0, weight_decay=0.01, clip_norm=None)
    got, lrs = _run(tx, p0, grads)
    np.testing.assert_allclose(lrs, [0.1, 0.09, 0.08], rtol=1e-6)
    want = _adamw_hand(p0, grads, [0.1, 0.09, 0.08], wd=0.01)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # The first step of bias-corrected Adam moves each coordinate by lr * sign(g) (+ decay): check one by hand.
    one, _ = _run(make_optimizer(0.1, 10, 0.0, weight_decay=0.0, clip_norm=None), p0, grads[:1])
    np.testing.assert_allclose(one, [0.9, -1.9, 2.9, 0.5], rtol=1e-6)


def test_first_update_in_warmup_uses_lr_zero():
    p0 = [1.0, -2.0]
    got, lrs = _run(make_optimizer(peak_lr=1e-2, total_steps=100, warmup_ratio=0.03), p0, [[0.5, 0.5], [0.1, -0.1]])
    assert lrs == [0.0, pytest.approx(1e-2 / 3, rel=1e-6)]
    # lr 0 leaves the params unchanged but the moments still absorb the first gradient (as in torch).
    want = _adamw_hand(p0, [[0.5, 0.5], [0.1, -0.1]], [0.0, 1e-2 / 3])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_global_norm_clipping():
    p0 = [0.0, 0.0]
    g1, g2 = [3.0, 4.0], [0.3, -0.1]  # |g1| = 5 is clipped to 1 -> [0.6, 0.8]; |g2| < 1 passes through
    tx = make_optimizer(peak_lr=0.1, total_steps=10, warmup_ratio=0.0, clip_norm=1.0)
    got, _ = _run(tx, p0, [g1, g2])
    want = _adamw_hand(p0, [[0.6, 0.8], g2], [0.1, 0.09])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    unclipped, _ = _run(make_optimizer(0.1, 10, 0.0, clip_norm=None), p0, [g1, g2])
    assert np.abs(unclipped - got).max() > 1e-3  # clipping changed the second step


def test_matches_torch_adamw_with_clipping():
    torch = pytest.importorskip("torch")
    tfo = pytest.importorskip("transformers.optimization")
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(6,)).astype(np.float32)
    grads = [(rng.normal(size=(6,)) * s).astype(np.float32) for s in (2.0, 0.1, 1.0, 0.3, 3.0, 0.05)]
    total, ratio, lr = 8, 0.25, 1e-2
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.AdamW([tp], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = tfo.get_linear_schedule_with_warmup(opt, warmup_steps(total, ratio), total)
    for g in grads:
        tp.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([tp], 1.0)
        opt.step()
        sched.step()
    got, _ = _run(make_optimizer(lr, total, ratio), p0, grads)
    # torch clips by 1/(norm + 1e-6) where optax uses 1/norm, and forms 1 - 0.999**t in float64 (see B2):
    # agreement to ~1e-5 relative of the update, not bitwise.
    np.testing.assert_allclose(got, tp.detach().numpy(), rtol=2e-5, atol=lr * 1e-5)


def test_state_is_a_pytree_of_arrays():
    tx = make_optimizer(total_steps=100)  # 3 warmup steps: the schedule starts at 0
    state = tx.init({"w": jnp.zeros((2, 3))})
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    assert float(current_lr(state)) == 0.0
    with pytest.raises(ValueError, match="make_optimizer"):
        current_lr(optax.adam(1e-3).init({"w": jnp.zeros(2)}))
