"""Single-turn instruction datasets: stanford_alpaca, code_alpaca, gpt4_alpaca, dolly, self_instruct,
unnatural_instructions -> one user/assistant pair each, through open-instruct's random templates.

Reference (open-instruct `reformat_datasets.py`, June 2023): `encode_instruction_example(instruction, input, output)`
per record in file order, ids `<dataset>_<index>`; Dolly maps context->input and response->output; Unnatural
Instructions reads `core_data.jsonl` ({"instruction", "instances": [{"input", "constraints", "output"}]}) and appends
"\\n" + constraints unless empty or "none"/"none.", ids from a running instance count.

Deviations and why:
- One `random.Random(seed)` per dataset instead of the global stream shared by all converters in os.listdir order,
  so a dataset's output never depends on which other datasets were converted before it. Converted alone with the
  same seed, the output equals the reference's.
- Also accepted, because they are what is publicly reachable for two datasets: Self-Instruct's seed/eval layout
  ({"instruction", "instances": [{"input", "output"}]}, one example per instance, running ids), and GPT-4-LLM's
  flat copy of Unnatural Instructions ({"instruction", "input", "output", "label"}), where "label" holds the original
  Unnatural Instructions answer that TÜLU trained on, so it is used as the output (GPT-4's "output" is not).
- Records with a missing or non-string field are errors naming file and line (the reference raises a bare
  KeyError), or are skipped and counted with --skip_bad_records. Skipping keeps the other records' ids unchanged.
- gpt4_alpaca: only the English file is read (the reference downloads the Chinese one but has load_zh=False).
"""
from __future__ import annotations

import random
from typing import Iterator

from camel_jax.data.converters._common import input_files
from camel_jax.data.records import BadRecord, Tally, read_records, require
from camel_jax.data.templates import encode_instruction_example, single_turn

# dataset -> (reference file names in a --raw folder, (instruction, input, output) field names)
SPECS = {
    "stanford_alpaca": (("alpaca_data.json",), ("instruction", "input", "output")),
    "code_alpaca": (("code_alpaca_20k.json",), ("instruction", "input", "output")),
    "gpt4_alpaca": (("alpaca_gpt4_data.json",), ("instruction", "input", "output")),
    "dolly": (("databricks-dolly-15k.jsonl",), ("instruction", "context", "response")),
    "self_instruct": (("all_instances_82K.jsonl",), ("instruction", "input", "output")),
    "unnatural_instructions": (("core_data.jsonl",), ("instruction", "input", "output")),
}


def _units(name: str, d: dict) -> list[tuple[str, str, str]]:
    """(instruction, input, output) triples of one raw record."""
    f_ins, f_in, f_out = SPECS[name][1]
    if name in ("unnatural_instructions", "self_instruct") and isinstance(d, dict) and "instances" in d:
        (instruction,) = require(d, "instruction")
        if not isinstance(d["instances"], list):
            raise BadRecord("bad_type", "field 'instances' is not a list")
        out = []
        for j, inst in enumerate(d["instances"]):
            try:
                inp, output = require(inst, "input", "output")
                (constraints,) = require(inst, "constraints", optional=("constraints",))
            except BadRecord as e:
                raise BadRecord(e.reason, f"instance {j}: {e.detail}") from None
            ins = instruction
            if constraints and constraints.lower() not in ("none", "none."):
                ins = instruction + "\n" + constraints
            out.append((ins, inp, output))
        return out
    if name == "unnatural_instructions" and isinstance(d, dict) and "label" in d:
        instruction, inp, output = require(d, "instruction", "input", "label")
        return [(instruction, inp, output)]
    return [tuple(require(d, f_ins, f_in, f_out))]


def convert(name: str, raw: str, rng: random.Random, tally: Tally) -> Iterator[dict]:
    files = input_files(raw, SPECS[name][0], ("*.json", "*.jsonl", "*.json.gz", "*.jsonl.gz"), what=name)
    running = 0  # output count, for ids of layouts where a record holds several instances
    for path in files:
        for rec in read_records(path, tally):
            index = tally.read - 1  # position among all raw records read: stable when others are skipped
            units = tally.attempt(rec, lambda d: _units(name, d))
            if units is None:
                continue
            if not units:
                tally.drop("no_instances")
                continue
            tally.converted += 1
            nested = isinstance(rec.data, dict) and "instances" in rec.data
            for instruction, inp, output in units:
                ex = encode_instruction_example(instruction, inp, output, rng=rng)
                ex_id = running if nested else index
                running += 1
                yield {"dataset": name, "id": f"{name}_{ex_id}",
                       "messages": single_turn(ex["prompt"], ex["completion"])}
