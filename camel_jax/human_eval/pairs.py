"""The items of the study: one instruction and two models' responses, from the shared file or two models' outputs.

Two sources. (1) open-instruct's comparison file (`eval_instances_tulu_1.jsonl`): lines `{"id", "prompt",
"completions": [{"model", "completion"} x2]}`; one id recurs in three pairings there, so a pair is named by its id
*and* its two models (`pair_id`). The order in that file is fixed (TÜLU-65B always first against ChatGPT), which is
why the app, not this file, chooses the sides. (2) Two models' outputs on the same prompts, each `NAME=FILE`: a
`camel_jax.evaluate` predictions.jsonl (`{"id", "prompt", "output", "meta"}`; the annotator reads
`meta.instruction` where the task keeps one, as alpaca_farm does, else the chat-rendered prompt) or a
`camel_jax.generate --output` file (`{"id", "output"}`, no prompt: its `--input` file supplies them). Every bad line fails naming
file:line; so do ids that only one model answered and an id whose prompt differs between the two files.
"""
from __future__ import annotations

import dataclasses
import json
import os

from camel_jax.cli import UsageError
from camel_jax.human_eval.records import json_lines


@dataclasses.dataclass(frozen=True)
class Pair:
    """One instruction with two responses in the source's order (sides are the app's business, not the file's)."""
    instance_id: str
    prompt: str
    model_1: str
    completion_1: str
    model_2: str
    completion_2: str

    @property
    def pair_id(self) -> str:
        return pair_id(self.instance_id, self.model_1, self.model_2)

    def completion(self, model: str) -> str:
        if model == self.model_1:
            return self.completion_1
        if model == self.model_2:
            return self.completion_2
        raise KeyError(f"pair {self.pair_id} has no model {model!r}")


def pair_id(instance_id: str, model_a: str, model_b: str) -> str:
    """The name of a pair whatever its sides: the instance id and the two models sorted."""
    return f"{instance_id}:{'|'.join(sorted((model_a, model_b)))}"


def _text(rec: dict, key: str, where: str, allow_empty: bool = False) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise UsageError(f"{where}: field {key!r} must be a non-empty string, got {json.dumps(value)[:60]}")
    return value


def _id(rec: dict, where: str) -> str:
    rid = rec.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise UsageError(f"{where}: field 'id' must be a non-empty string or integer")
    return str(rid)


def read_comparisons(path: str) -> list[Pair]:
    """Pairs of an open-instruct comparison file, in file order; a pair (id + models) appearing twice is an error."""
    pairs, seen = [], {}
    for n, rec in json_lines(path):
        where = f"{path}:{n}"
        comps = rec.get("completions")
        if not isinstance(comps, list) or len(comps) != 2:
            raise UsageError(f"{where}: field 'completions' must be a list of two {{\"model\", \"completion\"}}")
        for i, c in enumerate(comps):
            if not isinstance(c, dict):
                raise UsageError(f"{where}: completions[{i}] must be an object {{\"model\", \"completion\"}}")
        models = [_text(c, "model", f"{where}: completions[{i}]") for i, c in enumerate(comps)]
        if models[0] == models[1]:
            raise UsageError(f"{where}: both completions are from model {models[0]!r}")
        p = Pair(_id(rec, where), _text(rec, "prompt", where), models[0],
                 _text(comps[0], "completion", f"{where}: completions[0]", allow_empty=True), models[1],
                 _text(comps[1], "completion", f"{where}: completions[1]", allow_empty=True))
        if p.pair_id in seen:
            raise UsageError(f"{where}: pair {p.pair_id!r} repeats line {seen[p.pair_id]}")
        seen[p.pair_id] = n
        pairs.append(p)
    if not pairs:
        raise UsageError(f"{path}: no pairs")
    return pairs


def _prompt_of(value) -> str:
    """A prompt as the annotator reads it: raw text as-is; a generate `messages` conversation, one turn per block."""
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in value)


def read_outputs(path: str, prompts: dict[str, str] | None = None) -> dict[str, tuple[int, str, str]]:
    """id -> (line, prompt, output) of a generate or evaluate jsonl; the prompt from the record or from `prompts`."""
    out = {}
    for n, rec in json_lines(path):
        where = f"{path}:{n}"
        rid = _id(rec, where)
        if "output" not in rec:
            hint = " (evaluate ran with n > 1 samples; pair one sample per item)" if "outputs" in rec else ""
            raise UsageError(f"{where}: no field 'output'{hint}; expected camel_jax.generate or evaluate output")
        output = _text(rec, "output", where, allow_empty=True)
        meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
        if isinstance(meta.get("instruction"), str) and meta["instruction"].strip():
            prompt = meta["instruction"]  # evaluate's alpaca_farm: the instruction as written, not chat-rendered
        elif "prompt" in rec:
            prompt = _text(rec, "prompt", where)
        elif prompts is not None and rid in prompts:
            prompt = prompts[rid]
        else:
            raise UsageError(f"{where}: id {rid!r} has no 'prompt'" + (
                " and is not in the prompts file" if prompts is not None else
                "; a generate output needs its --input file (prompts=FILE)"))
        if rid in out:
            raise UsageError(f"{where}: duplicate id {rid!r} (first on line {out[rid][0]})")
        out[rid] = (n, prompt, output)
    if not out:
        raise UsageError(f"{path}: no records")
    return out


def read_prompts(path: str) -> dict[str, str]:
    """id -> prompt text of a camel_jax.generate --input file (its own reader checks every line)."""
    from camel_jax.infer.batch_file import read_input

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    return {str(rid): _prompt_of(p) for _, rid, p in read_input(path)}


def _named(spec: str) -> tuple[str, str]:
    name, eq, path = spec.partition("=")
    if not eq or not name.strip() or not path:
        raise UsageError(f"{spec!r}: expected MODEL=FILE.jsonl (a model's name and its output file)")
    return name.strip(), path


def pair_outputs(spec_1: str, spec_2: str, prompts_path: str | None = None) -> list[Pair]:
    """Pairs from two models' outputs on the same prompts (`MODEL=FILE` each), in the first file's order."""
    (m1, p1), (m2, p2) = _named(spec_1), _named(spec_2)
    if m1 == m2:
        raise UsageError(f"both outputs are named {m1!r}; give the two models different names")
    prompts = read_prompts(prompts_path) if prompts_path else None
    a, b = read_outputs(p1, prompts), read_outputs(p2, prompts)
    for x, px, y, py in ((a, p1, b, p2), (b, p2, a, p1)):
        only = [rid for rid in x if rid not in y]
        if only:
            raise UsageError(f"{px}:{x[only[0]][0]}: id {only[0]!r} is not in {py} ({len(only)} ids are only in "
                             f"{px}); pair outputs on the same prompts")
    pairs = []
    for rid, (n, prompt, out) in a.items():
        n2, prompt2, out2 = b[rid]
        if prompt2 != prompt:
            raise UsageError(f"{p2}:{n2}: the prompt of id {rid!r} differs from {p1}:{n}; pair outputs on the "
                             f"same prompts")
        pairs.append(Pair(rid, prompt, m1, out, m2, out2))
    return pairs


def load_pairs(specs: list[str], prompts_path: str | None = None) -> list[Pair]:
    """`--pairs` values: one comparison file, or two MODEL=FILE outputs (with `prompts_path` for generate's)."""
    if len(specs) == 1 and "=" not in specs[0]:
        if prompts_path:
            raise UsageError("--prompts goes with two MODEL=FILE outputs, not a comparison file")
        return read_comparisons(specs[0])
    if len(specs) == 2:
        return pair_outputs(specs[0], specs[1], prompts_path)
    raise UsageError("--pairs takes one comparison file (id, prompt, completions) or two MODEL=FILE outputs, got "
                     f"{len(specs)} values")
