"""What a run shows and keeps per step: a JSONL file, TensorBoard scalars, a progress bar with ETA, and MFU.

Files go through camel_jax.storage: a local folder or a ``gs://`` one (where the log is rewritten whole at each
`flush`, which the loop calls before every checkpoint, since objects cannot be appended to).
Only process 0 writes (every other process gets a writer that does nothing), so a multi-host run has one log.
A resumed run rewrites the log up to its restart step first, so steps replayed after a kill are not counted twice.
`LateMetrics` reads each step's metrics off the device only once the next step is queued, so the host never waits
on the device between steps.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from typing import Any

from camel_jax import storage

# Peak dense bf16 FLOP/s per JAX device, by a lower-case substring of `device.device_kind` (first match wins).
# TPU v2/v3 expose each core as a device (half a chip); v4 and later expose a chip.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("tpu v6", 918e12),  # v6e (Trillium)
    ("tpu v5 lite", 197e12),  # v5e
    ("tpu v5e", 197e12),
    ("tpu v5", 459e12),  # v5p
    ("tpu v4", 275e12),
    ("tpu v3", 61.5e12),
    ("tpu v2", 22.5e12),
    ("h200", 989e12),
    ("h100", 989e12),
    ("a100", 312e12),
    ("l4", 121e12),
)


def peak_flops(device_kind: str) -> float | None:
    """Peak FLOP/s of one device of this kind, or None when unknown (CPUs: MFU is reported as n/a)."""
    kind = device_kind.lower()
    for key, flops in PEAK_FLOPS:
        if key in kind:
            return flops
    return None


def mfu(tokens_per_s: float, flops_per_token: float, num_devices: int, device_kind: str) -> float | None:
    peak = peak_flops(device_kind)
    if peak is None or num_devices < 1:
        return None
    return tokens_per_s * flops_per_token / (num_devices * peak)


class LateMetrics:
    """Per-step device metrics read one step late: `push` queues the step just dispatched and returns the one before
    it, now on the host (that read waits only for the previous step; the device already has the next). Reading the
    step just dispatched instead would idle the device while the host assembles the next batch.

    Records are (step, {name: float}, tokens: int, seconds): seconds run from when the step could start (its
    dispatch, or the previous step's read, whichever is later) to its read: the device time per step when the host
    keeps up, the host's when it does not."""

    def __init__(self):
        self._pending: tuple | None = None
        self._last_read = float("-inf")

    def push(self, step: int, metrics: dict, tokens: Any, t_dispatch: float) -> tuple | None:
        done = self.pop()
        self._pending = (step, metrics, tokens, t_dispatch)
        return done

    def pop(self) -> tuple | None:
        """The pending step's record now (waiting for it), or None; the loop calls this before every save and at
        the end, so no state is saved before its metrics were checked."""
        if self._pending is None:
            return None
        import jax

        step, metrics, tokens, t0 = self._pending
        self._pending = None
        metrics, tokens = jax.device_get((metrics, tokens))
        now = time.perf_counter()
        record = (step, {k: float(v) for k, v in metrics.items()}, int(tokens), now - max(t0, self._last_read))
        self._last_read = now
        return record


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MetricsWriter:
    """Per-step records to <output_dir>/metrics.jsonl and <output_dir>/tensorboard, a tqdm bar, printed lines.

    `log(step, metrics, step_time, tokens)`: `metrics` holds host floats (loss, lr, grad_norm, ...), `tokens` the
    non-padding tokens the step processed (throughput and MFU count useful work, not padding)."""

    def __init__(self, output_dir: str, total_steps: int, start_step: int = 0, flops_per_token: float = 0.0,
                 num_devices: int = 1, device_kind: str = "cpu", enabled: bool = True, print_every: int = 0,
                 tensorboard: bool = True, progress: bool = True, stream=None):
        self.enabled = enabled
        self.total_steps, self.start_step = total_steps, start_step
        self.flops_per_token, self.num_devices, self.device_kind = flops_per_token, num_devices, device_kind
        self.print_every = print_every or max(1, total_steps // 20)
        self.stream = stream or sys.stdout
        self.tokens = 0
        self.t0 = time.perf_counter()
        self.last: dict[str, Any] = {}
        self._jsonl = self._tb = self._bar = None
        if not enabled:
            return
        storage.makedirs(output_dir)
        self.path = storage.join(output_dir, "metrics.jsonl")
        self._remote = storage.is_remote(self.path)  # objects cannot be appended to: the log is kept and rewritten
        self._lines = self._truncate(start_step)
        if not self._remote:
            self._jsonl = open(self.path, "a", encoding="utf-8")
        self._tb_dir = storage.join(output_dir, "tensorboard")
        if tensorboard:
            from tensorboardX import SummaryWriter

            # In a bucket the events are written to a local folder and uploaded whole by `flush` (tensorboardX's own
            # gs:// writer uploads once more when garbage-collected, after close, and retries for minutes when the
            # bucket is gone). The suffix keeps each start's event file apart, even within one second.
            self._tb_local = tempfile.mkdtemp(prefix="camel_jax_tb_") if self._remote else self._tb_dir
            self._tb = SummaryWriter(self._tb_local, purge_step=start_step + 1,
                                     filename_suffix=f".from_step_{start_step}")
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                             file=sys.stderr, desc="train", disable=None)  # None: no bar when not a terminal

    def _truncate(self, start_step: int) -> list[str]:
        """Keep only records of steps <= start_step (a resumed run replays the steps after its checkpoint); returns
        the lines kept."""
        if not storage.exists(self.path):
            return []
        keep = []
        for line in storage.read_text(self.path).splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # the line a kill cut short
                continue
            if rec.get("step", 0) <= start_step:
                keep.append(line + "\n")
        storage.write_text(self.path, "".join(keep))  # atomic: a kill here leaves the old log, never a cut one
        return keep

    def log(self, step: int, metrics: dict[str, float], step_time: float, tokens: int) -> dict[str, Any]:
        """Record one step (1-based: the number of optimizer updates done). Returns the record."""
        self.tokens += int(tokens)
        tps = tokens / step_time if step_time > 0 else float("nan")
        util = mfu(tps, self.flops_per_token, self.num_devices, self.device_kind)
        rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}, "tokens": int(tokens),
               "step_time_s": round(step_time, 6), "tokens_per_s": round(tps, 2),
               "tokens_per_s_per_device": round(tps / max(self.num_devices, 1), 2),
               "mfu": None if util is None else round(util, 5),
               "elapsed_s": round(time.perf_counter() - self.t0, 3)}
        self.last = rec
        if not self.enabled:
            return rec
        if self._remote:
            self._lines.append(json.dumps(rec) + "\n")
        else:
            self._jsonl.write(json.dumps(rec) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{rec.get('loss', float('nan')):.4f}", lr=f"{rec.get('lr', 0):.2e}",
                                  tok_s=f"{tps:,.0f}", refresh=False)
            self._bar.update(1)
        if step % self.print_every == 0 or step == self.total_steps or step == self.start_step + 1:
            self.write(self.line(rec))
        return rec

    def line(self, rec: dict[str, Any]) -> str:
        done = rec["step"] - self.start_step
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(done, 1) * (self.total_steps - rec["step"])
        util = "n/a" if rec["mfu"] is None else f"{100 * rec['mfu']:.1f}%"
        return (f"step {rec['step']}/{self.total_steps}  loss {rec.get('loss', float('nan')):.4f}  "
                f"lr {rec.get('lr', 0):.3e}  grad_norm {rec.get('grad_norm', float('nan')):.3f}  "
                f"tok/s {rec['tokens_per_s']:,.0f}  MFU {util}  eta {_fmt_time(eta)}")

    def write(self, text: str) -> None:
        """Print a line without breaking the progress bar (process 0 only)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def flush(self) -> None:
        """Make everything logged so far durable: a no-op for a local log (flushed per line); in a bucket, the log
        object is rewritten whole and TensorBoard's events are uploaded."""
        if not self.enabled:
            return
        if self._remote:
            storage.write_text(self.path, "".join(self._lines))
        if self._tb is not None:
            self._tb.flush()
            if self._remote:
                storage.copy_dir(self._tb_local, self._tb_dir)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
            if self._remote:
                storage.copy_dir(self._tb_local, self._tb_dir)
                shutil.rmtree(self._tb_local, ignore_errors=True)
        if self.enabled and self._remote:
            storage.write_text(self.path, "".join(self._lines))
        if self._jsonl is not None:
            self._jsonl.close()
        self._jsonl = self._tb = self._bar = None
