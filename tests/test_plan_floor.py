"""The analytic floor's terms from shapes alone (no compile): what accumulation and the compute dtype add."""
from camel_jax.model.config import PRESETS
from camel_jax.plan.floor import floor_bytes

GRADS = 4_000  # the fp32 gradient tree's sharded bytes (planner.state_memory's "gradients")
MEMORY = {"state": 12_000, "batch": 100, "gradients": GRADS}


def _floor(dtype, grad_accum):
    cfg = PRESETS["tiny-mha"].replace(dtype=dtype)
    return floor_bytes(cfg, MEMORY, rows_per_device=2, seq_len=128, mp=1, loss_chunk=512, grad_accum=grad_accum)


def test_accumulator_only_when_accumulating_and_bf16_gradients_against_a_bf16_copy():
    one, two = _floor("bfloat16", 1), _floor("bfloat16", 2)
    assert one["gradient_accumulator"] == 0 and two["gradient_accumulator"] == GRADS
    assert one["gradients"] == one["compute_copy"] == GRADS // 2
    assert two["floor"] - one["floor"] == GRADS
    f32 = _floor("float32", 1)  # fp32 compute: no cast copy, gradients at their full size
    assert f32["compute_copy"] == 0 and f32["gradients"] == GRADS
    for fl in (one, two, f32):
        assert fl["floor"] == sum(v for k, v in fl.items() if k != "floor")
