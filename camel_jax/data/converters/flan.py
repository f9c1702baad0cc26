"""FLAN v2 data: `cot` (the CoT submix) and `flan_v2` (a 100k resample of the whole collection).

Reference (open-instruct, June 2023):
- cot: `random.sample` 50,000 from `cot_zsopt.jsonl`, then 50,000 from `cot_fsopt.jsonl` (all when fewer), ids
  `cot_<index>` over zero-shot then few-shot.
- flan_v2: `flan_v2_resampled_100k.jsonl` used as is, ids `flan_v2_<index>`; that file was made by
  `scripts/resample_flan_v2.py`: for each submix in a fixed order, `random.sample(range(num_lines),
  int(portion * 100000))` and the chosen lines written in file order.
- both: prompt = inputs + "\\n" unless it already ends in "\\n" or (after rstrip) ":"; completion = targets.

Accepted inputs for `cot` (--raw): a folder or file with `cot_zsopt.jsonl` / `cot_fsopt.jsonl` (FLAN-formatted,
the reference path), or FLAN's source folder `flan/v2` holding `cot_data/*_train.tsv` and `templates.py` (or a
folder of the TSVs with `flan_templates=` pointing at templates.py), rendered by `flan_cot_tsv` with FLAN's CoT
templates. For `flan_v2`: `flan_v2_resampled_100k.jsonl` (as is), or a folder of submix files
`<submix>.jsonl` which are resampled with the reference's portions (`total=100000`).

Deviations and why:
- Own `random.Random(seed)` per dataset instead of one global stream shared with other converters.
- The reference guards the zero-shot file by `num_few_shot_examples > 0` (a typo); we guard each by its own count.
- Resampling caps a submix's sample at its line count (the reference crashes); caps are noted in the summary.
- Records without string "inputs"/"targets" are errors naming file and line (or are skipped and counted).
- From raw TSVs see `flan_cot_tsv` (FLAN's strings, our seeded sampling and a fixed shot count).
"""
from __future__ import annotations

import json
import os
import random
from typing import Iterator

from camel_jax.data.converters import flan_cot_tsv
from camel_jax.data.records import Record, RecordError, Tally, read_jsonl, require
from camel_jax.data.templates import single_turn

# scripts/resample_flan_v2.py, in its order
FLAN_V2_PORTIONS = {"flan_zsopt": 0.1, "flan_fsopt": 0.1, "flan_zsnoopt": 0.1, "flan_fsnoopt": 0.1,
                    "t0_zsopt": 0.08, "t0_fsopt": 0.08, "t0_zsnoopt": 0.08, "t0_fsnoopt": 0.08,
                    "niv2_zsopt": 0.1, "niv2_fsopt": 0.1, "cot_zsopt": 0.025, "cot_fsopt": 0.025,
                    "dialog_zsopt": 0.015, "dialog_fsopt": 0.015}

FLAN_V2_READY = "flan_v2_resampled_100k.jsonl"
_FLAN_V2_ACCEPTS = (f"flan_v2 takes (--raw) the reference's {FLAN_V2_READY} (the file, or a folder holding it), or a "
                    f"folder of all {len(FLAN_V2_PORTIONS)} FLAN v2 submix files to resample: "
                    f"{', '.join(s + '.jsonl' for s in FLAN_V2_PORTIONS)}")


def flan_prompt(inputs: str) -> str:
    return inputs if inputs.endswith("\n") or inputs.rstrip().endswith(":") else inputs + "\n"


def _example(name: str, idx: int, inputs: str, targets: str) -> dict:
    return {"dataset": name, "id": f"{name}_{idx}", "messages": single_turn(flan_prompt(inputs), targets)}


def _read_flan_jsonl(path: str, tally: Tally) -> list[tuple[str, str]]:
    out = []
    for rec in read_jsonl(path, tally):
        pair = tally.attempt(rec, lambda d: tuple(require(d, "inputs", "targets")))
        if pair is not None:
            out.append(pair)
    return out


def _sample(items: list, k: int, rng: random.Random) -> list:
    return rng.sample(items, k=k) if k < len(items) else items


def _cot(name, raw, rng, tally, n_zero, n_few, n_shots, flan_templates) -> Iterator[dict]:
    if not os.path.isdir(raw):
        raise RecordError(f"{raw}: cot needs a folder (with cot_zsopt.jsonl + cot_fsopt.jsonl, or FLAN's flan/v2 "
                          f"folder with cot_data/ and templates.py)")
    files = [os.path.join(raw, f) for f in ("cot_zsopt.jsonl", "cot_fsopt.jsonl")]
    if any(os.path.isfile(f) for f in files):
        pairs = []
        for path, n in zip(files, (n_zero, n_few)):
            if not os.path.isfile(path):
                raise RecordError(f"{path}: missing (cot needs cot_zsopt.jsonl and cot_fsopt.jsonl)")
            valid = _read_flan_jsonl(path, tally)
            chosen = _sample(valid, n, rng)
            tally.drop("not_sampled", len(valid) - len(chosen))
            pairs += chosen
        tally.converted += len(pairs)
        for idx, (inputs, targets) in enumerate(pairs):
            yield _example(name, idx, inputs, targets)
        return
    tsv_dir = os.path.join(raw, "cot_data") if os.path.isdir(os.path.join(raw, "cot_data")) else raw
    templates_py = flan_templates or os.path.join(raw, "templates.py")
    if not os.path.isfile(templates_py):
        raise RecordError(f"{raw}: neither cot_zsopt/cot_fsopt.jsonl nor FLAN's templates.py (pass "
                          f"flan_templates=PATH / --flan_templates)")
    templates = flan_cot_tsv.load_templates(templates_py)
    zs, fs = flan_cot_tsv.render_submixes(tsv_dir, templates, rng, tally, n_zero, n_few, n_shots)
    tally.notes.append(f"rendered from FLAN CoT TSVs: {len(zs)} zero-shot + {len(fs)} few-shot ({n_shots} shots)")
    for idx, r in enumerate(zs + fs):
        yield _example(name, idx, r["inputs"], r["targets"])


def resample_flan_v2(folder: str, rng: random.Random, tally: Tally, total: int = 100000,
                     portions: dict | None = None) -> list[tuple[str, str]]:
    """The reference's resample: per submix, `rng.sample(range(num_lines), int(portion * total))`, kept in file
    order. Only the chosen lines are parsed and validated; the others count as read and `not_sampled`."""
    portions = portions or FLAN_V2_PORTIONS
    missing = [s for s in portions if not os.path.isfile(os.path.join(folder, f"{s}.jsonl"))]
    if missing:
        raise RecordError(f"{folder}: missing FLAN v2 submix files {[m + '.jsonl' for m in missing]}")
    out = []
    for submix, portion in portions.items():
        path = os.path.join(folder, f"{submix}.jsonl")
        with open(path, "rb") as f:
            n_lines = sum(1 for line in f if line.strip())
        k = int(portion * total)
        if k > n_lines:
            tally.notes.append(f"{submix}: asked {k} lines, file has {n_lines}; took all")
        chosen = set(rng.sample(range(n_lines), min(k, n_lines)))
        with open(path, "rb") as f:
            j = -1
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                j += 1
                tally.read += 1
                if j not in chosen:
                    tally.drop("not_sampled")
                    continue
                rec = _parse_line(path, lineno, raw, tally)
                pair = None if rec is None else tally.attempt(rec, lambda d: tuple(require(d, "inputs", "targets")))
                if pair is not None:
                    out.append(pair)
    return out


def _parse_line(path: str, lineno: int, raw: bytes, tally: Tally) -> Record | None:
    where = f"{path}: line {lineno}"
    try:
        return Record(path, f"line {lineno}", json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as e:
        tally.reject(where, "non_utf8", f"byte {raw[e.start]:#04x} at column {e.start + 1}")
    except json.JSONDecodeError as e:
        tally.reject(where, "invalid_json", f"{e.msg} at column {e.colno}")
    return None


def convert(name: str, raw: str, rng: random.Random, tally: Tally, zero_shot: int = 50000, few_shot: int = 50000,
            n_shots: int = 2, flan_templates: str | None = None, total: int = 100000,
            portions: dict | None = None) -> Iterator[dict]:
    if name == "cot":
        yield from _cot(name, raw, rng, tally, zero_shot, few_shot, n_shots, flan_templates)
        return
    ready = raw if os.path.isfile(raw) else os.path.join(raw, FLAN_V2_READY)
    if os.path.isfile(ready):
        pairs = _read_flan_jsonl(ready, tally)
    elif os.path.isdir(raw):
        missing = [s for s in (portions or FLAN_V2_PORTIONS) if not os.path.isfile(os.path.join(raw, f"{s}.jsonl"))]
        if missing:
            raise RecordError(f"{raw}: a folder without {FLAN_V2_READY} and missing submix file(s) "
                              f"{', '.join(m + '.jsonl' for m in missing)}; {_FLAN_V2_ACCEPTS}")
        pairs = resample_flan_v2(raw, rng, tally, total, portions)
    else:
        raise RecordError(f"{raw}: no such file or folder; {_FLAN_V2_ACCEPTS}")
    tally.converted += len(pairs)
    for idx, (inputs, targets) in enumerate(pairs):
        yield _example(name, idx, inputs, targets)
