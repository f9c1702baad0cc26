"""Metrics: JSONL records, TensorBoard events, MFU arithmetic, resume truncation, silent non-main processes, and
reading each step's metrics one step late."""
import io
import json

import pytest

from camel_jax.train import metrics as M


def test_peak_flops_table_and_mfu():
    assert M.peak_flops("TPU v4") == 275e12
    assert M.peak_flops("TPU v5 lite") == 197e12
    assert M.peak_flops("TPU v5p") == 459e12
    assert M.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert M.peak_flops("cpu") is None
    # 1000 tok/s × 1e9 FLOP/token over 4 v4 chips = 1e12 / 1.1e15
    assert M.mfu(1000.0, 1e9, 4, "TPU v4") == pytest.approx(1e12 / (4 * 275e12))
    assert M.mfu(1000.0, 1e9, 4, "cpu") is None


def _records(path):
    return [json.loads(line) for line in open(path)]


def test_jsonl_tensorboard_and_printed_lines(tmp_path):
    out = io.StringIO()
    w = M.MetricsWriter(str(tmp_path), total_steps=4, flops_per_token=6e6, num_devices=2, device_kind="TPU v4",
                        print_every=2, progress=False, stream=out)
    for step in range(1, 5):
        w.log(step, {"loss": 5.0 - step, "lr": 1e-3 * step, "grad_norm": 0.5}, step_time=0.5, tokens=1000)
    w.close()
    recs = _records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert [r["loss"] for r in recs] == [4.0, 3.0, 2.0, 1.0]
    assert recs[0]["tokens_per_s"] == 2000.0 and recs[0]["tokens_per_s_per_device"] == 1000.0
    assert recs[0]["mfu"] == pytest.approx(round(2000 * 6e6 / (2 * 275e12), 5))
    assert w.tokens == 4000
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("step 1/4  loss 4.0000") and "MFU" in lines[0]
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_cpu_reports_mfu_as_na(tmp_path):
    out = io.StringIO()
    w = M.MetricsWriter(str(tmp_path), total_steps=1, flops_per_token=1.0, device_kind="cpu", tensorboard=False,
                        progress=False, stream=out)
    rec = w.log(1, {"loss": 1.0, "lr": 0.1, "grad_norm": 1.0}, step_time=1.0, tokens=10)
    w.close()
    assert rec["mfu"] is None and "MFU n/a" in out.getvalue()


def test_resume_drops_replayed_steps(tmp_path):
    w = M.MetricsWriter(str(tmp_path), total_steps=6, tensorboard=False, progress=False, stream=io.StringIO())
    for step in range(1, 6):  # killed after logging step 5; the last checkpoint was step 3
        w.log(step, {"loss": float(step)}, 1.0, 1)
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 1')  # a kill in the middle of a write
    w = M.MetricsWriter(str(tmp_path), total_steps=6, start_step=3, tensorboard=False, progress=False,
                        stream=io.StringIO())
    for step in range(4, 7):
        w.log(step, {"loss": 10.0 + step}, 1.0, 1)
    w.close()
    recs = _records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in recs] == [1.0, 2.0, 3.0, 14.0, 15.0, 16.0]


def test_non_main_process_writes_nothing(tmp_path):
    out = io.StringIO()
    w = M.MetricsWriter(str(tmp_path / "x"), total_steps=2, enabled=False, stream=out)
    rec = w.log(1, {"loss": 2.0}, 1.0, 5)
    w.write("hello")
    w.close()
    assert rec["loss"] == 2.0 and out.getvalue() == "" and not (tmp_path / "x").exists()


class _Probe:
    """A device value that notes when the host reads it."""
    reads: list = []

    def __init__(self, step, value):
        self.step, self.value = step, value

    def __float__(self):
        _Probe.reads.append(self.step)
        return float(self.value)

    def __int__(self):
        _Probe.reads.append(self.step)
        return int(self.value)


def test_late_metrics_read_a_step_only_once_the_next_is_queued():
    _Probe.reads.clear()
    late = M.LateMetrics()
    assert late.push(1, {"loss": _Probe(1, 2.5)}, _Probe(1, 10), t_dispatch=0.0) is None
    assert _Probe.reads == []  # nothing waits on the step just dispatched
    step, metrics, tokens, seconds = late.push(2, {"loss": _Probe(2, 1.5)}, _Probe(2, 7), t_dispatch=0.0)
    assert (step, metrics, tokens) == (1, {"loss": 2.5}, 10) and seconds >= 0
    assert _Probe.reads == [1, 1]  # step 2 is still unread
    assert late.pop()[:3] == (2, {"loss": 1.5}, 7)  # before a save or at the end: read now
    assert late.pop() is None
