"""Super-NaturalInstructions (`super_ni`): 60 zero-shot + 20 two-shot examples per training task.

Reference (open-instruct `convert_super_ni_data`, June 2023): tasks from `splits/xlingual/train_tasks.txt` in file
order, skipping names containing `_mmmlu_` (MMLU test leakage); per task `random.sample(Instances, 80)` when it has
more than 80 instances (else all, in file order); the first 60 go through the random instruction template with
instruction = Definition[0] and output = output[0]; the rest are few-shot via `encode_few_shot_example` with
`random.sample(Positive Examples, 2)` (all of them when there are no more than 2). Ids `super_ni_<instance id>`.

Deviations and why:
- Split: `super_ni_split="auto"` uses `splits/xlingual/train_tasks.txt` like the reference when present, else
  `splits/default/train_tasks.txt` (the English split, the only one in the shared sample); the summary says which.
- Task files named by the split but absent from `tasks/` are counted (`files: task_file_missing`) and the run goes on,
  so a partial download still converts; the reference crashes on the first missing file.
- Instances with a missing input/id or an empty output list are bad records (error naming file and instance index,
  or skipped and counted); sampling draws from the valid instances, which is the reference's draw whenever all are
  valid. A task with no Definition or malformed positive examples is a file-level error (or skipped and counted).
- Own `random.Random(seed)` for this dataset instead of the global stream shared across datasets.
"""
from __future__ import annotations

import os
import random
from typing import Iterator

from camel_jax.data.records import BadRecord, RecordError, Tally, read_json_document, require
from camel_jax.data.templates import encode_few_shot_example, encode_instruction_example, single_turn


def split_file(raw: str, split: str, tally: Tally) -> str:
    if split == "auto":
        split = "xlingual" if os.path.isfile(os.path.join(raw, "splits", "xlingual", "train_tasks.txt")) \
            else "default"
    path = os.path.join(raw, "splits", split, "train_tasks.txt")
    if not os.path.isfile(path):
        raise RecordError(f"{path}: SuperNI split file not found (--raw must be the natural-instructions folder "
                          f"holding splits/ and tasks/)")
    tally.notes.append(f"split file {os.path.relpath(path, raw)}")
    return path


def _instance(d) -> tuple[str, str, str]:
    inst_id, inp = require(d, "id", "input")
    (outputs,) = require(d, "output", types=(list,))
    if not outputs or not isinstance(outputs[0], str):
        raise BadRecord("missing_field", "empty or non-string 'output' list")
    return inst_id, inp, outputs[0]


def _task_header(task: dict, path: str) -> tuple[str, list]:
    try:
        (definition,) = require(task, "Definition", types=(list,))
        if not definition or not isinstance(definition[0], str):
            raise BadRecord("missing_field", "empty Definition")
        (positives,) = require(task, "Positive Examples", types=(list,))
        for j, p in enumerate(positives):
            try:
                require(p, "input", "output")
            except BadRecord as e:
                raise BadRecord(e.reason, f"Positive Examples[{j}]: {e.detail}") from None
        require(task, "Instances", types=(list,))
    except BadRecord as e:
        raise RecordError(f"{path}: {e.reason}: {e.detail}") from None
    return definition[0], positives


def convert(name: str, raw: str, rng: random.Random, tally: Tally, super_ni_split: str = "auto",
            zero_shot: int = 60, few_shot: int = 20, n_shots: int = 2) -> Iterator[dict]:
    with open(split_file(raw, super_ni_split, tally), encoding="utf-8") as f:
        tasks = [line.strip() for line in f if line.strip()]
    for task_name in tasks:
        if "_mmmlu_" in task_name:
            tally.files["task_skipped_mmmlu"] += 1
            continue
        path = os.path.join(raw, "tasks", f"{task_name}.json")
        if not os.path.isfile(path):
            tally.files["task_file_missing"] += 1
            continue
        try:
            task = read_json_document(path)
            instruction, positives = _task_header(task, path)
        except RecordError:
            if not tally.skip_bad:
                raise
            tally.files["task_file_bad"] += 1
            continue
        tally.files["task_converted"] += 1
        valid = []
        for j, d in enumerate(task["Instances"]):
            tally.read += 1
            try:
                valid.append(_instance(d))
            except BadRecord as e:
                tally.reject(f"{path}: Instances[{j}]", e.reason, e.detail)
        chosen = rng.sample(valid, k=zero_shot + few_shot) if zero_shot + few_shot < len(valid) else valid
        tally.drop("not_sampled", len(valid) - len(chosen))
        tally.converted += len(chosen)
        for inst_id, inp, output in chosen[:zero_shot]:
            ex = encode_instruction_example(instruction, inp, output, rng=rng)
            yield {"dataset": name, "id": f"super_ni_{inst_id}", "messages": single_turn(ex["prompt"],
                                                                                       ex["completion"])}
        for inst_id, inp, output in chosen[zero_shot:]:
            shots = rng.sample(positives, k=n_shots) if n_shots < len(positives) else positives
            ex = encode_few_shot_example(instruction, shots, inp, output)
            yield {"dataset": name, "id": f"super_ni_{inst_id}", "messages": single_turn(ex["prompt"],
                                                                                       ex["completion"])}
