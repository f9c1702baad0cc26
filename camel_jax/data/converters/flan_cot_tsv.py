"""FLAN v2's chain-of-thought submix rendered from FLAN's raw CoT TSVs with FLAN's own CoT templates.

TÜLU's `cot` data are FLAN v2's pre-rendered `cot_zsopt.jsonl` / `cot_fsopt.jsonl` ({"inputs", "targets"}), only
downloadable from AI2's Beaker. What is public is FLAN's source: `flan/v2/cot_data/<name>_train.tsv` (question,
answer, rationale; "\\n" escaped) and `flan/v2/templates.py`. This module renders the same kind of records:

- rows as FLAN's `simple_cot_tsv` reads them: columns 0/1/2 = question/answer/chain_of_thought, literal "\\n"
  turned into newlines in the question and the rationale (not the answer);
- task names as in FLAN's task_configs: `cot_<name>` except `stream_aqua` and `stream_qed`;
- zero-shot ("zsopt"): one of the task's `PATTERNS` (input, target) templates, uniformly at random;
- few-shot ("fsopt"): one of the task's `FEWSHOT_PATTERNS`, `n_shots` other rows of the same task as exemplars, laid
  out as seqio's fewshot_preprocessor does: for each exemplar inputs_prefix + inputs + x_y_delimiter +
  targets_prefix + targets + example_separator, then inputs_prefix + query inputs + x_y_delimiter +
  targets_prefix.rstrip(), trailing spaces removed (FLAN's remove_trailing_spaces_escape_newlines), then FLAN's
  input_pattern (`{inputs}` + final_suffix).

The templates are read from FLAN's templates.py with `ast` (never executed: it imports FLAN packages), so the
strings are FLAN's exactly. Deviations from FLAN's pipeline, and why: the number of exemplars is fixed (`n_shots`,
default 2) instead of FLAN's per-task shot counts with length-based pruning, which need its seqio/T5 tokenizer
stack; rows are sampled uniformly from the pool of all tasks (examples-proportional) with a seeded
`random.Random` instead of seqio's mixture sampling. So the records are FLAN-formatted and use FLAN's strings, but
are not byte-identical to the Beaker files.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import random
from typing import Sequence

from camel_jax.data.records import RecordError, Tally, read_tsv

# TSV file stem -> FLAN task name (flan/v2/task_configs.py, CoT section)
COT_TASKS = {"gsm8k": "cot_gsm8k", "strategyqa": "cot_strategyqa", "creak": "cot_creak", "qasc": "cot_qasc",
             "esnli": "cot_esnli", "ecqa": "cot_ecqa", "sensemaking": "cot_sensemaking", "aqua": "stream_aqua",
             "qed": "stream_qed"}


@dataclasses.dataclass(frozen=True)
class FewShotPattern:
    inputs: str
    targets: str
    inputs_prefix: str
    targets_prefix: str
    x_y_delimiter: str
    example_separator: str
    final_suffix: str
    input_pattern: str


@dataclasses.dataclass(frozen=True)
class CotTemplates:
    zero_shot: dict  # task -> [(input_template, target_template)]
    few_shot: dict  # task -> [FewShotPattern]


def _dict_literal(tree: ast.Module, name: str) -> ast.Dict:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets) \
                and isinstance(node.value, ast.Dict):
            return node.value
    raise ValueError(f"no `{name} = {{...}}` literal")


def load_templates(path: str, tasks: Sequence[str] = tuple(COT_TASKS.values())) -> CotTemplates:
    """FLAN's zero-shot and few-shot CoT templates for `tasks`, read from flan/v2/templates.py."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        defaults = {}
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "FewShotPattern":
                for st in node.body:
                    if isinstance(st, ast.AnnAssign) and st.value is not None:
                        defaults[st.target.id] = ast.literal_eval(st.value)
        zero, few = {}, {}
        zdict, fdict = _dict_literal(tree, "PATTERNS"), _dict_literal(tree, "FEWSHOT_PATTERNS")
        for key, value in zip(zdict.keys, zdict.values):
            name = ast.literal_eval(key)
            if name in tasks:
                zero[name] = [tuple(ast.literal_eval(t)) for t in value.elts]
        for key, value in zip(fdict.keys, fdict.values):
            name = ast.literal_eval(key)
            if name in tasks:
                pats = []
                for call in value.elts:
                    kw = dict(defaults, **{k.arg: ast.literal_eval(k.value) for k in call.keywords})
                    pats.append(FewShotPattern(**{f.name: kw[f.name] for f in dataclasses.fields(FewShotPattern)}))
                few[name] = pats
    except (OSError, SyntaxError, ValueError, KeyError) as e:
        raise RecordError(f"{path}: cannot read FLAN CoT templates: {e}") from None
    return CotTemplates(zero, few)


def _fill(template: str, row: tuple[str, str, str]) -> str:
    q, a, c = row
    return template.replace("{question}", q).replace("{answer}", a).replace("{chain_of_thought}", c)


def render_zero_shot(row, templates: CotTemplates, task: str, rng: random.Random) -> dict:
    inp, tgt = rng.choice(templates.zero_shot[task])
    return {"inputs": _fill(inp, row), "targets": _fill(tgt, row), "task": task}


def render_few_shot(row, exemplars, templates: CotTemplates, task: str, rng: random.Random) -> dict:
    p = rng.choice(templates.few_shot[task])
    shots = "".join(p.inputs_prefix + _fill(p.inputs, ex) + p.x_y_delimiter + p.targets_prefix
                    + _fill(p.targets, ex) + p.example_separator for ex in exemplars)
    inputs = (shots + p.inputs_prefix + _fill(p.inputs, row) + p.x_y_delimiter + p.targets_prefix.rstrip()).rstrip(" ")
    inputs = p.input_pattern.format(final_suffix=p.final_suffix).replace("{inputs}", inputs)
    return {"inputs": inputs, "targets": _fill(p.targets, row), "task": task}


def read_cot_rows(folder: str, tally: Tally) -> list[tuple[str, tuple[str, str, str]]]:
    """(task, (question, answer, chain_of_thought)) of every `<name>_train.tsv` in `folder`, by file name."""
    names = sorted(n for n in os.listdir(folder) if n.endswith("_train.tsv"))
    if not names:
        raise RecordError(f"{folder}: no FLAN CoT *_train.tsv files")
    rows = []
    for n in names:
        stem = n[: -len("_train.tsv")]
        if stem not in COT_TASKS:
            raise RecordError(f"{os.path.join(folder, n)}: unknown FLAN CoT file (known: "
                              f"{', '.join(f'{s}_train.tsv' for s in COT_TASKS)})")
        for rec in read_tsv(os.path.join(folder, n), tally, 3):
            q, a, c = rec.data[:3]
            rows.append((COT_TASKS[stem], (q.replace("\\n", "\n"), a, c.replace("\\n", "\n"))))
    return rows


def render_submixes(folder: str, templates: CotTemplates, rng: random.Random, tally: Tally, n_zero: int,
                    n_few: int, n_shots: int = 2) -> tuple[list[dict], list[dict]]:
    """FLAN-formatted zero-shot and few-shot records; accounts rows as converted (used as a query at least once)
    or dropped (`not_sampled`)."""
    rows = read_cot_rows(folder, tally)
    for task in sorted({t for t, _ in rows}):
        if task not in templates.zero_shot or task not in templates.few_shot:
            raise RecordError(f"{folder}: no FLAN templates for task {task}")
    by_task: dict = {}
    for i, (task, _) in enumerate(rows):
        by_task.setdefault(task, []).append(i)
    zs_idx = rng.sample(range(len(rows)), n_zero) if n_zero < len(rows) else list(range(len(rows)))
    zs = [render_zero_shot(rows[i][1], templates, rows[i][0], rng) for i in zs_idx]
    fs_idx = rng.sample(range(len(rows)), n_few) if n_few < len(rows) else list(range(len(rows)))
    fs = []
    for i in fs_idx:
        task = rows[i][0]
        pool = by_task[task]  # draw one spare so the query itself can be left out without a scan
        ex = [j for j in rng.sample(pool, min(n_shots + 1, len(pool))) if j != i][:n_shots]
        fs.append(render_few_shot(rows[i][1], [rows[j][1] for j in ex], templates, task, rng))
    used = len(set(zs_idx) | set(fs_idx))
    tally.converted += used
    tally.drop("not_sampled", len(rows) - used)
    return zs, fs
