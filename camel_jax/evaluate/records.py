"""An evaluation folder on disk: what was run with which flags, per-task predictions written as they come, resume.

Layout of --out DIR:
  run.json                    the run's identity (protocol, checkpoint, chat format, generation cap, dtype): a
                              rerun with other values is refused, naming the flag, so one folder never mixes runs
  <task>/predictions.jsonl    one self-contained record per item, appended in completion order, flushed + fsynced
  <task>/metrics.json         the setting's score over the selected items' records
  <task>/run.json             the task's record: protocol, checkpoint, git commit, seeds, counts, ids, sessions
  table.md, table.json        the paper's table over every task folder present

Correctness: each record carries `correct`. A setting with a `correct` function writes it with the prediction; one
whose correctness only exists after scoring (BBH, TydiQA, Codex in the sandbox, AlpacaFarm's judge) has its
score's `per_item` written back into the predictions file after every scoring (`annotate`, an atomic rewrite), so
the predictions carry it too, not only metrics.json.

A kill loses at most the line being written: a last line without its newline is cut off and redone on rerun. A
record whose prompt differs from the item's (other data or tokenizer) is refused rather than mixed in.
"""
from __future__ import annotations

import json
import os
import subprocess

from camel_jax.cli import UsageError
from camel_jax.infer.batch_file import cut_after

RUN_FILE = "run.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
IDENTITY_FLAGS = ("protocol", "checkpoint", "chat_format", "max_new_tokens", "dtype")


def git_commit() -> str | None:
    """The camel_jax source's commit, "+dirty" when it has uncommitted changes; None outside a git checkout."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e.msg}); not an evaluation folder of this command?") from None


def write_json(path: str, value) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_identity(out_dir: str, identity: dict) -> None:
    """Write DIR/run.json on first use; afterwards every identity flag must match it."""
    path = os.path.join(out_dir, RUN_FILE)
    if not os.path.exists(path):
        os.makedirs(out_dir, exist_ok=True)
        write_json(path, identity)
        return
    old = read_json(path)
    for flag in IDENTITY_FLAGS:
        if old.get(flag) != identity.get(flag):
            raise UsageError(f"--{flag} {identity.get(flag)!r} differs from {old.get(flag)!r} recorded in {path}; "
                             f"rerun with the same --{flag} or choose another --out")


def read_predictions(path: str, items_by_id: dict) -> dict[str, dict]:
    """id -> record of a predictions file (a torn last line is truncated away). Every record must belong to one
    of `items_by_id` with the same prompt."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        data = f.read()
    done, good = {}, 0
    for n, raw in enumerate(data.splitlines(keepends=True), 1):
        if not raw.endswith(b"\n"):
            break
        try:
            rec = json.loads(raw)
            rid = rec["id"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{path}:{n}: not a prediction record; was this file written by camel_jax.evaluate?") \
                from None
        item = items_by_id.get(rid)
        if item is None:
            raise UsageError(f"{path}:{n}: id {rid!r} is not an item of this task (another --data_dir?)")
        if rec.get("prompt") != item.prompt:
            raise UsageError(f"{path}:{n}: the prompt of {rid!r} differs from this run's (another --data_dir, "
                             f"tokenizer or chat template?); choose another --out")
        if rid in done:
            raise UsageError(f"{path}:{n}: duplicate id {rid!r}")
        done[rid] = rec
        good += len(raw)
    cut_after(path, good, len(data))
    return done


def correctness(value) -> dict:
    """A score's per_item value -> the record fields it sets: a bool or number is `correct` as it is; Codex's
    {samples, passed, results} -> `correct` per sample (passed or not) and `results`; the judge's {preference,
    swapped, cached} -> `correct` as the win-rate credit (win 1, tie 0.5, loss 0, unjudged None) and `judgment`;
    SQuAD's {exact_match, f1} -> `correct` = F1 (TydiQA's metric) and `exact_match`."""
    if not isinstance(value, dict):
        return {"correct": value}
    if "results" in value:
        return {"correct": [r == "passed" for r in value["results"]], "results": value["results"]}
    if "preference" in value:
        return {"correct": {2: 1.0, 0: 0.5, 1: 0.0}.get(value["preference"]), "judgment": value}
    if "f1" in value:
        return {"correct": value["f1"], "exact_match": value.get("exact_match")}
    return {"correct": None, "scores": value}


_SCORED = ("correct", "results", "judgment", "exact_match", "scores")


def annotate(path: str, per_item: dict, ids) -> None:
    """Rewrite the predictions file with `correctness(per_item.get(id))` for the records of `ids` (the ones just
    scored; a record scored without a value, e.g. not judged, gets `correct` None), others as they were, in the
    file's order; atomically, and only when something changes."""
    ids = set(ids)
    with open(path, "rb") as f:
        lines = [raw for raw in f if raw.endswith(b"\n")]
    out, changed = [], False
    for raw in lines:
        rec = json.loads(raw)
        if rec["id"] not in ids:
            out.append(raw.decode("utf-8"))
            continue
        new = {**{k: v for k, v in rec.items() if k not in _SCORED}, **correctness(per_item.get(rec["id"]))}
        changed |= new != rec
        out.append(json.dumps(new, ensure_ascii=False) + "\n")
    if changed:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def load_records(path: str) -> dict[str, dict]:
    """id -> record, for rescoring (no items to check against; a torn last line is ignored, not cut)."""
    out = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
                out[rec["id"]] = rec
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{n}: not a prediction record") from None
    return out


class Appender:
    """Appends records to a predictions file, each line flushed and fsynced before the next."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def task_dirs(out_dir: str) -> list[str]:
    """Task folders of an evaluation folder (those holding a predictions file), sorted."""
    if not os.path.isfile(os.path.join(out_dir, RUN_FILE)):
        raise UsageError(f"--out {out_dir}: no {RUN_FILE}; not an evaluation folder of this command")
    return sorted(d for d in os.listdir(out_dir) if os.path.isfile(os.path.join(out_dir, d, PREDICTIONS)))
