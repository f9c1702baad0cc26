"""The training input pipeline: conversations -> tokenized once -> per-epoch shuffled (packed) rows -> batches.

    data = TrainData(source, tokenizer, max_seq_length=2048, batch_size=128, packing=False, seed=42)
    data.steps_per_epoch, data.num_examples, data.drops        # known before the first batch
    it = data.iterator(state=None, rows=rows)   # state: one saved from it.get_state(); rows: see Sharding below
    batch = next(it)    # {"inputs","targets","loss_mask","segment_ids","positions"}: [len(rows), T]
    it.get_state()      # JSON-able position of the NEXT batch; data.iterator(that) yields bitwise the same batches

`source`: a list of unified records ({"messages": [...]}, optionally "dataset"), a mixture/task/dataset name from
mixtures.py (files under data_dir or $CAMEL_JAX_DATA_DIR), `tulu_mix_sample`, or .jsonl path(s).

Why it is built this way:
* Determinism without state: batch (epoch, step) is a pure function of (data, seed, epoch, step). Epoch e shuffles
  the examples with numpy's PCG64 seeded by (seed, e) — a different order every epoch, the same for a seed — so the
  saved position is just {epoch, step} and a restored iterator recomputes exactly what an uninterrupted one yields.
* Sharding: every process computes the same (cheap, length-only) plan of the global batch and materialises only the
  rows its devices hold: `rows`, positions 0..batch_size-1 in any order (None = all), which the training loop reads
  off the batch sharding (train/distributed.py `batch_rows`): one row, a strided set or all rows, as the mesh and
  device order make them. The position is independent of the process layout (a run can resume on another topology).
* T = max_seq_length: an example truncated at max_seq_length ids takes max_seq_length-1 slots after the shift
  (packing.py), so one-example-per-row (the paper's padding, `packing=False`) and packed rows share the shape.
* Packing (`packing=True` = best-fit decreasing over the epoch's shuffled order, then the rows shuffled): the row count
  depends only on the lengths, so steps_per_epoch is fixed up front. A last partial global batch is filled with
  all-padding rows (loss_mask 0) unless drop_remainder: no example is silently skipped.
* Mixtures are concatenations (the paper). `by_rate=True` instead draws a fixed-size selection once per seed with
  the rates (mixtures.mixture_rates), repeating or subsampling datasets; the selection is then shuffled per epoch.
* Tokenization happens once into a flat numpy store; `cache_dir` keeps it on disk keyed by content, tokenizer,
  max length and format. Prefetching runs batch building in a background thread.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from typing import Any, Sequence

import numpy as np

from camel_jax.data import mixtures as M
from camel_jax.data.chat_format import DropCounter, encode_messages
from camel_jax.data.packing import Examples, RowPlan, build_rows, packing_efficiency, plan_rows

CACHE_FORMAT = 1


def read_records(path: str, dataset: str = "") -> list[dict]:
    """Unified jsonl records; a bad line raises an error naming the file and line."""
    from camel_jax.data.records import BadRecord, RecordError, Tally, check_messages, read_jsonl, require

    out = []
    for rec in read_jsonl(path, Tally(dataset=dataset, bad_hint="fix or remove that line")):
        try:
            (messages,) = require(rec.data, "messages", types=(list,))
            check_messages(messages)
        except BadRecord as e:
            raise RecordError(f"{rec.where}: {e}") from None
        out.append({"dataset": dataset or str(rec.data.get("dataset", "")), "messages": messages})
    return out


def mixture_records(name: str, data_dir: str | None = None) -> list[dict]:
    """All records of a mixture/task/dataset name, SAMPLE_MIXTURE or a .jsonl path, in table order."""
    out: list[dict] = []
    for dataset, path in M.source_files(name, data_dir):
        out += read_records(path, dataset)
    return out


def _records_of(source, data_dir) -> list[dict]:
    if isinstance(source, str):
        return mixture_records(source, data_dir)
    source = list(source)
    if source and all(isinstance(s, str) for s in source):
        return [r for p in source for r in read_records(p)]
    return source


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies a tokenizer by its files when it has them, and always by how it encodes a probe."""
    h = hashlib.sha256()
    path = getattr(tokenizer, "path", None)
    if isinstance(path, str):
        for f in (path, os.path.join(path, "tokenizer.model"), os.path.join(path, "tokenizer.json")):
            if os.path.isfile(f):
                with open(f, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
                break
    probe = "<|user|>\nHello wörld 123 \t 日本\n<|assistant|>\n  x</s>"
    h.update(json.dumps([tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id, tokenizer.encode(probe)]).encode())
    return h.hexdigest()


def _encode_list(tokenizer, messages_list, first: int, max_seq_length: int, newline_after_eos: bool):
    """[(ids, mask) or None] for consecutive records first, first+1, ...; and their drop counts."""
    drops, outs = DropCounter(), []
    for i, messages in enumerate(messages_list, start=first):
        try:
            out = encode_messages(tokenizer, messages, max_seq_length, newline_after_eos=newline_after_eos,
                                  drops=drops)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"record {i}: {e}") from None
        if out is not None and (len(out[0]) < 2 or not out[1][1:].any()):
            drops["no_trainable_tokens"] += 1  # only BOS was labelled: nothing to predict after the shift
            out = None
        outs.append(out)
    return outs, drops


_WORKER_TOKENIZER = None


def _worker_init(path: str) -> None:
    global _WORKER_TOKENIZER
    from camel_jax.model.tokenizer import load_tokenizer

    _WORKER_TOKENIZER = load_tokenizer(path)


def _worker_encode(args):
    return _encode_list(_WORKER_TOKENIZER, *args)


def _encode_all(records, tokenizer, max_seq_length, newline_after_eos, num_workers):
    messages = [r["messages"] if isinstance(r, dict) and "messages" in r else None for r in records]
    bad = next((i for i, m in enumerate(messages) if m is None), None)
    if bad is not None:
        raise ValueError(f"record {bad}: expected a dict with 'messages', got {str(records[bad])[:80]}")
    from camel_jax.model.tokenizer import Tokenizer

    path = getattr(tokenizer, "path", None)
    if num_workers <= 1 or not isinstance(tokenizer, Tokenizer) or not path:
        return _encode_list(tokenizer, messages, 0, max_seq_length, newline_after_eos)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunk = max(1, min(2000, -(-len(messages) // (4 * num_workers))))
    jobs = [(messages[a:a + chunk], a, max_seq_length, newline_after_eos) for a in range(0, len(messages), chunk)]
    outs, drops = [], DropCounter()
    # spawn, not fork: the parent may already run JAX threads
    try:
        with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init, initargs=(path,)) as pool:
            for o, d in pool.map(_worker_encode, jobs):
                outs += o
                drops.update(d)
    except BrokenProcessPool as e:  # e.g. a __main__ that spawned workers cannot import (stdin, notebooks)
        import sys
        print(f"note: tokenizer worker processes failed ({e}); tokenizing in this process", file=sys.stderr)
        return _encode_list(tokenizer, messages, 0, max_seq_length, newline_after_eos)
    return outs, drops


def tokenize_records(records: Sequence[dict], tokenizer, max_seq_length: int, newline_after_eos: bool = False,
                     cache_dir: str | None = None, num_workers: int = 0
                     ) -> tuple[Examples, np.ndarray, list[str], DropCounter]:
    """(examples, dataset index per example, dataset names, drops). Drops: no trainable target after the shift.

    num_workers > 1: that many spawned processes encode in parallel (same result; ~2 s start-up, worth it for big
    mixtures; the program's __main__ must be importable, i.e. a guarded script or `python -m`).
    """
    key = None
    if cache_dir:
        h = hashlib.sha256(json.dumps([CACHE_FORMAT, max_seq_length, newline_after_eos,
                                       tokenizer_fingerprint(tokenizer)]).encode())
        for r in records:
            h.update(json.dumps([r.get("dataset", ""), r["messages"]], sort_keys=True).encode())
        key = os.path.join(cache_dir, f"tokens-{h.hexdigest()[:24]}.npz")
        if os.path.isfile(key):
            z = np.load(key)
            meta = json.loads(str(z["meta"]))
            return (Examples(z["tokens"], z["masks"], z["offsets"]), z["dataset_idx"], meta["names"],
                    DropCounter(meta["drops"]))
    outs, drops = _encode_all(records, tokenizer, max_seq_length, newline_after_eos, num_workers)
    names: list[str] = []
    index: dict[str, int] = {}
    items, ds_idx = [], []
    for r, out in zip(records, outs):
        if out is None:
            continue
        name = str(r.get("dataset", ""))
        if name not in index:
            index[name] = len(names)
            names.append(name)
        items.append(out)
        ds_idx.append(index[name])
    ex = Examples.from_list(items)
    ds = np.asarray(ds_idx, dtype=np.int32)
    if key:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, tokens=ex.tokens, masks=ex.masks, offsets=ex.offsets, dataset_idx=ds,
                 meta=json.dumps({"names": names, "drops": dict(drops)}))
        os.replace(tmp, key)
    return ex, ds, names, drops


class TrainData:
    """Deterministic, resumable, per-process training batches; see the module docstring."""

    def __init__(self, source: Any, tokenizer, max_seq_length: int, batch_size: int, packing: bool | str = False,
                 seed: int = 0, *, data_dir: str | None = None, by_rate: bool = False,
                 rates: dict | str | None = None, newline_after_eos: bool = False, cache_dir: str | None = None,
                 drop_remainder: bool = False, prefetch: int = 2, num_workers: int = 0):
        if isinstance(tokenizer, str):
            from camel_jax.model.tokenizer import load_tokenizer
            tokenizer = load_tokenizer(tokenizer)
        mode = {True: "bfd", False: "none"}.get(packing, packing)
        if mode not in ("none", "bfd"):
            raise ValueError(f"packing={packing!r}: expected True/False, 'bfd' or 'none' (greedy packing changes the "
                             f"row count per epoch, so steps_per_epoch would not be fixed)")
        if max_seq_length < 2 or batch_size < 1:
            raise ValueError(f"max_seq_length={max_seq_length}, batch_size={batch_size}: must be >= 2 and >= 1")
        self.seq_len, self.batch_size, self.packing, self.seed = int(max_seq_length), int(batch_size), mode, int(seed)
        self.drop_remainder, self.prefetch = drop_remainder, prefetch
        records = _records_of(source, data_dir)
        self.num_records = len(records)
        self.examples, self.dataset_idx, self.dataset_names, self.drops = tokenize_records(
            records, tokenizer, self.seq_len, newline_after_eos, cache_dir, num_workers)
        del records
        if len(self.examples) == 0:
            raise ValueError(f"no trainable example among {self.num_records} records (drops: {self.drops.summary()})")
        self.selection = self._select(by_rate, M.parse_rates(rates))
        slots = self.examples.slots[self.selection]
        plan0 = plan_rows(slots, self.seq_len, self.packing)
        self.num_rows = plan0.num_rows
        steps = self.num_rows // batch_size if drop_remainder else -(-self.num_rows // batch_size)
        if steps < 1:
            raise ValueError(f"{self.num_rows} rows make no full batch of {batch_size} (drop_remainder=True)")
        self.steps_per_epoch = steps
        self.efficiency = packing_efficiency(slots, plan0, self.seq_len)
        self.fingerprint = hashlib.sha256(json.dumps(
            [self.seq_len, batch_size, mode, self.seed, drop_remainder] +
            [hashlib.sha256(a.tobytes()).hexdigest() for a in (self.examples.offsets, self.examples.tokens,
                                                                self.examples.masks, self.selection)]
        ).encode()).hexdigest()[:16]
        self._plan_cache: tuple[int, RowPlan] | None = None
        self._lock = threading.Lock()

    @property
    def num_examples(self) -> int:
        """Examples per epoch (the selection; equals the kept examples unless sampling by rate)."""
        return len(self.selection)

    def _select(self, by_rate: bool, rates: dict | None) -> np.ndarray:
        n = len(self.examples)
        if not by_rate:
            return np.arange(n, dtype=np.int64)
        counts = {name: int((self.dataset_idx == i).sum()) for i, name in enumerate(self.dataset_names)}
        want = M.rate_counts(counts, M.mixture_rates(counts, by_rate=True, rates=rates), total=n)
        rng = np.random.default_rng([self.seed, 2**31 - 1])
        parts = []
        for i, name in enumerate(self.dataset_names):
            pool = np.flatnonzero(self.dataset_idx == i)
            k = want[name]
            reps, rest = divmod(k, len(pool))
            parts += [pool] * reps + [np.sort(rng.choice(pool, size=rest, replace=False))]
        return np.concatenate(parts).astype(np.int64)

    def epoch_plan(self, epoch: int) -> RowPlan:
        """The rows of an epoch, in training order (global, identical on every process)."""
        with self._lock:
            if self._plan_cache is not None and self._plan_cache[0] == epoch:
                return self._plan_cache[1]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.selection))
        slots = self.examples.slots[self.selection]
        plan = plan_rows(slots, self.seq_len, self.packing, order=order)
        if self.packing != "none":
            plan = plan.permuted(np.random.default_rng([self.seed, epoch, 1]).permutation(plan.num_rows))
        if plan.num_rows != self.num_rows:
            raise AssertionError(f"epoch {epoch} planned {plan.num_rows} rows, expected {self.num_rows}")
        plan = RowPlan(plan.row_offsets, self.selection[plan.example_ids])
        with self._lock:
            self._plan_cache = (epoch, plan)
        return plan

    def global_rows(self, epoch: int, step: int) -> np.ndarray:
        """Plan row indices of global batch (epoch, step); -1 marks an all-padding filler row."""
        rows = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        rows[rows >= self.num_rows] = -1
        return rows

    def batch_at(self, epoch: int, step: int, rows: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Rows `rows` (positions in the global batch; None = all) of global batch (epoch, step), in that order."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside the epoch's {self.steps_per_epoch} steps")
        at = self.global_rows(epoch, step)
        at = at if rows is None else at[self._positions(rows)]
        return build_rows(self.examples, self.epoch_plan(epoch), at, self.seq_len)

    def _positions(self, rows: Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.batch_size):
            raise IndexError(f"rows {rows.min()}..{rows.max()} outside a global batch of {self.batch_size}")
        return rows

    def iterator(self, state: dict | None = None, num_epochs: int | None = None,
                 rows: Sequence[int] | None = None) -> "DataIterator":
        """Batches from `state` (None: the start) on; `rows` as in batch_at, the same for every batch."""
        epoch, step = 0, 0
        if state:
            if state.get("fingerprint") != self.fingerprint:
                raise ValueError(f"data state {state} was saved for different data/settings (fingerprint "
                                 f"{state.get('fingerprint')!r}, this data {self.fingerprint!r}): same source, "
                                 f"tokenizer, max_seq_length, batch_size, packing and seed are needed to resume")
            epoch, step = int(state["epoch"]), int(state["step"])
        return DataIterator(self, epoch, step, num_epochs, self.prefetch, rows)

    def describe(self) -> str:
        return (f"{self.num_records} records -> {len(self.examples)} examples (dropped: {self.drops.summary()}), "
                f"{self.num_examples}/epoch in {self.num_rows} rows of {self.seq_len} "
                f"(packing {self.packing}, {100 * self.efficiency:.1f}% non-pad), {self.steps_per_epoch} steps/epoch "
                f"of {self.batch_size} rows")


class DataIterator:
    """Yields this process's rows of the batches in order across epochs; a thread builds up to `prefetch` ahead."""

    def __init__(self, data: TrainData, epoch: int, step: int, num_epochs: int | None, prefetch: int,
                 rows: Sequence[int] | None = None):
        self._data, self._num_epochs = data, num_epochs
        self._rows = None if rows is None else data._positions(rows).copy()
        self._epoch, self._step = self._norm(epoch, step)
        self._q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = None
        if prefetch > 0:
            self._thread = threading.Thread(target=self._produce, args=(self._epoch, self._step), daemon=True,
                                            name="camel_jax-data-prefetch")
            self._thread.start()

    def _norm(self, epoch: int, step: int) -> tuple[int, int]:
        spe = self._data.steps_per_epoch
        return epoch + step // spe, step % spe

    def _done(self, epoch: int) -> bool:
        return self._num_epochs is not None and epoch >= self._num_epochs

    def _produce(self, epoch: int, step: int) -> None:
        try:
            while not self._stop.is_set() and not self._done(epoch):
                self._put(self._data.batch_at(epoch, step, self._rows))
                epoch, step = self._norm(epoch, step + 1)
            self._put(StopIteration())
        except BaseException as e:  # surfaced in the consumer, with its traceback
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> "DataIterator":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._done(self._epoch):
            raise StopIteration
        if self._thread is None:
            item = self._data.batch_at(self._epoch, self._step, self._rows)
        else:
            item = self._q.get()
            if isinstance(item, BaseException):
                if not isinstance(item, StopIteration):
                    self.close()
                raise item
        self._epoch, self._step = self._norm(self._epoch, self._step + 1)
        return item

    def get_state(self) -> dict:
        """Position of the next batch this iterator returns (JSON-able)."""
        return {"epoch": self._epoch, "step": self._step, "fingerprint": self._data.fingerprint}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)

    def __enter__(self) -> "DataIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop.set()
