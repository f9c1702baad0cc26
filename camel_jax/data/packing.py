"""Tokenized examples in one flat store, row plans (packed or one example per row) and batch materialisation.

Batch contract (team contract): every array [B, T]; `inputs`/`targets` int32, `loss_mask` float32, `segment_ids`
int32 (1..k per packed example in a row, 0 = padding), `positions` int32 (restart at 0 per segment). Shifting is done
inside each example before packing: an example with ids x[0..n) and label mask m takes n-1 slots with
inputs = x[:-1], targets = x[1:], loss_mask = m[1:]. So no token ever predicts across an example boundary, and an
example truncated at T ids fits a row of T with one slot to spare (the paper truncates at max_seq_length ids).

Planning works on lengths only (cheap, the same on every host); rows are materialised per batch from the flat store
with vectorised numpy gathers, so an epoch of packed rows is never held in memory.

Packing modes:
  * "none"   one example per row (the paper's padding; open-instruct pads per batch, we pad to T: static shapes).
  * "bfd"    best-fit decreasing: examples by decreasing length (ties in the given order), each into the fullest
             row it still fits, else a new row. A first-fit-decreasing variant with the same guarantees and usually
             fewer rows; O(n log T) with a bucket per remaining capacity. The row count depends only on the multiset
             of lengths, so it is the same in every epoch however the examples are shuffled.
  * "greedy" next-fit in the given order (streaming; keeps the order, leaves more padding).
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Iterable, Sequence

import numpy as np

PACKING_MODES = ("none", "bfd", "greedy")
BATCH_KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions")


@dataclasses.dataclass
class Examples:
    """Tokenized examples as CSR: example i is tokens[offsets[i]:offsets[i+1]] with its label mask alongside."""
    tokens: np.ndarray  # int32 [total]
    masks: np.ndarray  # int8 [total]
    offsets: np.ndarray  # int64 [n+1]

    @classmethod
    def from_list(cls, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> "Examples":
        items = list(items)
        lengths = np.fromiter((len(ids) for ids, _ in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate([ids for ids, _ in items]).astype(np.int32) if items else np.zeros(0, np.int32)
        masks = np.concatenate([m for _, m in items]).astype(np.int8) if items else np.zeros(0, np.int8)
        return cls(tokens, masks, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def slots(self) -> np.ndarray:
        """Row slots each example takes after shifting: n - 1."""
        return self.lengths - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.tokens[a:b], self.masks[a:b]

    def subset(self, idx: Sequence[int]) -> "Examples":
        return Examples.from_list(self.example(int(i)) for i in idx)


@dataclasses.dataclass
class RowPlan:
    """Row r holds examples example_ids[row_offsets[r]:row_offsets[r+1]], in that order (segments 1, 2, ...)."""
    row_offsets: np.ndarray  # int64 [rows+1]
    example_ids: np.ndarray  # int64 [examples]

    @property
    def num_rows(self) -> int:
        return len(self.row_offsets) - 1

    def row(self, r: int) -> np.ndarray:
        return self.example_ids[self.row_offsets[r]:self.row_offsets[r + 1]]

    def permuted(self, perm: np.ndarray) -> "RowPlan":
        """The same rows in the order `perm` (a permutation of range(num_rows))."""
        counts = np.diff(self.row_offsets)[perm]
        offsets = np.zeros(len(perm) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ids = self.example_ids[_ranges(self.row_offsets[perm], counts)]
        return RowPlan(offsets, ids)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """concat(arange(s, s + c) for s, c) without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts) + np.arange(total, dtype=np.int64)


def plan_rows(slots: np.ndarray, seq_len: int, mode: str = "bfd", order: np.ndarray | None = None) -> RowPlan:
    """Assign examples (by their slot counts, ≤ seq_len each) to rows of seq_len. `order`: processing order of
    example indices (default 0..n-1); it is the row order for "none"/"greedy" and the tie order for "bfd"."""
    slots = np.asarray(slots, dtype=np.int64)
    order = np.arange(len(slots), dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
    if mode not in PACKING_MODES:
        raise ValueError(f"packing mode {mode!r}: expected one of {PACKING_MODES}")
    if len(order) and (slots[order].max() > seq_len or slots[order].min() < 1):
        bad = order[(slots[order] > seq_len) | (slots[order] < 1)][0]
        raise ValueError(f"example {bad} takes {slots[bad]} slots; each must take 1..seq_len={seq_len}")
    if mode == "none":
        return RowPlan(np.arange(len(order) + 1, dtype=np.int64), order.copy())
    if mode == "greedy":
        row_of = np.empty(len(order), dtype=np.int64)
        row, fill = -1, seq_len
        for j, s in enumerate(slots[order].tolist()):
            if fill + s > seq_len:
                row, fill = row + 1, 0
            fill += s
            row_of[j] = row
        return _plan_from_assignment(order, row_of)
    # best-fit decreasing, stable in `order` for equal lengths
    by_len = order[np.argsort(-slots[order], kind="stable")]
    caps: list[int] = []  # sorted distinct remaining capacities that have open rows
    bucket: dict[int, list[int]] = {}
    row_of = np.empty(len(by_len), dtype=np.int64)
    n_rows = 0
    for j, s in enumerate(slots[by_len].tolist()):
        k = bisect.bisect_left(caps, s)
        if k < len(caps):
            c = caps[k]
            rows = bucket[c]
            r = rows.pop()
            if not rows:
                del caps[k], bucket[c]
        else:
            c, r = seq_len, n_rows
            n_rows += 1
        row_of[j] = r
        left = c - s
        if left:
            if left in bucket:
                bucket[left].append(r)
            else:
                bucket[left] = [r]
                bisect.insort(caps, left)
    return _plan_from_assignment(by_len, row_of)


def _plan_from_assignment(example_ids: np.ndarray, row_of: np.ndarray) -> RowPlan:
    idx = np.argsort(row_of, kind="stable")  # rows in creation order; examples in placement order within a row
    counts = np.bincount(row_of, minlength=int(row_of.max()) + 1 if len(row_of) else 0)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return RowPlan(offsets, example_ids[idx])


def build_rows(examples: Examples, plan: RowPlan, rows: Sequence[int], seq_len: int) -> dict[str, np.ndarray]:
    """The batch dict for plan rows `rows` ([B]; -1 = an empty all-padding row), every array [B, seq_len]."""
    rows = np.asarray(rows, dtype=np.int64)
    B = len(rows)
    out = {k: np.zeros((B, seq_len), dtype=np.float32 if k == "loss_mask" else np.int32) for k in BATCH_KEYS}
    real = rows >= 0
    counts = np.zeros(B, dtype=np.int64)
    counts[real] = plan.row_offsets[rows[real] + 1] - plan.row_offsets[rows[real]]
    starts = np.where(real, plan.row_offsets[np.maximum(rows, 0)], 0)
    ex = plan.example_ids[_ranges(starts, counts)]  # examples of the batch, row by row
    if len(ex) == 0:
        return out
    row_of_ex = np.repeat(np.arange(B, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts  # index in `ex` of each row's first example
    seg = np.arange(len(ex), dtype=np.int64) - np.repeat(first, counts) + 1
    n = examples.offsets[ex + 1] - examples.offsets[ex] - 1  # slots per example
    end = np.cumsum(n)
    col0 = (end - n) - np.repeat((end - n)[first[counts > 0]], counts[counts > 0])
    if (col0 + n > seq_len).any():
        raise ValueError(f"a planned row holds more than seq_len={seq_len} slots")
    within = _ranges(np.zeros(len(ex), np.int64), n)
    src = np.repeat(examples.offsets[ex], n) + within
    r = np.repeat(row_of_ex, n)
    c = np.repeat(col0, n) + within
    out["inputs"][r, c] = examples.tokens[src]
    out["targets"][r, c] = examples.tokens[src + 1]
    out["loss_mask"][r, c] = examples.masks[src + 1]
    out["segment_ids"][r, c] = np.repeat(seg, n)
    out["positions"][r, c] = within
    return out


def packing_efficiency(slots: np.ndarray, plan: RowPlan, seq_len: int) -> float:
    """Fraction of the plan's row slots that hold a real token (1 - padding fraction)."""
    if plan.num_rows == 0:
        return 0.0
    return float(np.asarray(slots)[plan.example_ids].sum()) / (plan.num_rows * seq_len)
