"""BIG-Bench Hard, direct and chain-of-thought (open-instruct `eval/bbh/run_eval.py` at 13404e37a; open_instruct.md §4.3).

Files: `<data_dir>/bbh/bbh/<task>.json` ({"examples": [{"input", "target"}]}) and `<data_dir>/bbh/cot-prompts/<task>.txt`,
the layout of suzgunmirac/BIG-Bench-Hard. Both protocols:

* **tasks in sorted name order.** The paper took `glob` order, which depends on the filesystem, and its one
  `random.seed(42)` stream runs through the tasks in that order, so which 40 examples a task got is not
  reproducible from the paper's code. Sorted order is one order the paper could have had, and the same everywhere.
* subsample: one `random.Random(42)` (what `random.seed(42)` seeds) and `sample(examples, 40)` per task in that
  order; items keep the sampled order, and their id is `<task>/<index in the file>`.
* prompt: the cot-prompts file minus its first 2 lines (canary, `-----`), stripped, + "\n\nQ: " + input + "\nA:";
  chat: that text without "\nA:" is the user turn and "A:" the assistant prefix, rendered by the run's format
  (TÜLU: "<|user|>\n...\n<|assistant|>\nA:"). Direct: each exemplar paragraph starting "Q:" becomes its question
  + "\nA: " + the text after its last "So the answer is" (the final period kept), other paragraphs unchanged.
* greedy, 512 new tokens. Direct stops at "\n\n" (the paper's stop id-sequence, post-hoc only in June 2023).
  CoT has no stop, in both protocols (a setting has one decoding): the paper's `[[None]]` stopped nothing, and its
  metric strips the output before splitting it, which a stop at "\n\n" would pre-empt for an answer that opens
  with a blank line. Stopping at "\n\n" under fixed would also cut a chat model's multi-paragraph reasoning
  before its conclusion, which fixed's whole-output regex exists to find; open-instruct itself dropped the stop
  for chat format in Oct 2023 ("rely on the model knows when to stop") when it moved the regex to the whole
  output, and restored it for every format in Feb 2024 (#122). The price: a base model that never stops runs to
  512 tokens, as every June-2023 CoT generation did.
* metric: exact_match ignoring case and punctuation per task (metrics.py), reported = macro mean over tasks.

Extraction differs:

* paper (June 2023): `output.strip().split("\\n\\n")[0]`, then the first `So the answer is (.*?)\\.` → its group
  stripped, else that first paragraph stripped.
* fixed: the first `[tT]he answer is (.*?)\\.` anywhere in the output (the Oct-2023 regex, which also catches
  "The answer is ..." and a conclusion in a later paragraph, without that regex's stray `|` in the class); else the
  first paragraph, as June (not Oct 2023's whole output, which scores a model that runs on into a made-up
  next "Q:" as wrong even when its first line is the answer).
"""
from __future__ import annotations

import json
import os
import random
import re

from camel_jax.evaluate import metrics
from camel_jax.evaluate.task import BuildContext, Decoding, Item, Setting

PER_TASK = 40
SEED = 42
_PAPER_RE = re.compile(r"So the answer is (.*?)\.")
_FIXED_RE = re.compile(r"[tT]he answer is (.*?)\.")


class BBHDataError(ValueError):
    """A BBH file that is missing or not in the BIG-Bench-Hard layout (names the file)."""


def task_names(data_dir: str) -> list[str]:
    root = os.path.join(data_dir, "bbh")
    try:
        tasks = sorted(f[:-5] for f in os.listdir(os.path.join(root, "bbh")) if f.endswith(".json"))
        prompts = sorted(f[:-4] for f in os.listdir(os.path.join(root, "cot-prompts")) if f.endswith(".txt"))
    except FileNotFoundError as e:
        raise BBHDataError(f"BBH needs {root}/bbh/*.json and {root}/cot-prompts/*.txt: {e}") from None
    if not tasks or tasks != prompts:
        raise BBHDataError(f"{root}: task files and cot-prompts differ: only in bbh/: {sorted(set(tasks) - set(prompts))}"
                           f", only in cot-prompts/: {sorted(set(prompts) - set(tasks))}")
    return tasks


def task_prompt(path: str, cot: bool) -> str:
    """The few-shot prefix exactly as the paper built it (before its final strip)."""
    with open(path, encoding="utf-8") as f:
        text = "".join(f.readlines()[2:])
    if cot:
        return text
    fields = []
    for n, field in enumerate(text.split("\n\n")):
        if field.startswith("Q:"):
            if "So the answer is" not in field or "\nA:" not in field:
                raise BBHDataError(f"{path}: exemplar {n} lacks '\\nA:' or 'So the answer is'")
            field = field.split("\nA:")[0].strip() + "\nA: " + field.split("So the answer is")[-1].strip()
        fields.append(field)
    return "\n\n".join(fields)


def _load_examples(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            examples = json.load(f)["examples"]
        if not all(isinstance(e.get("input"), str) and isinstance(e.get("target"), str) for e in examples):
            raise TypeError("every example needs string input and target")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise BBHDataError(f"{path}: not a BBH task file ({e})") from None
    return examples


def _items(ctx: BuildContext, cot: bool) -> list[Item]:
    root = os.path.join(ctx.data_dir, "bbh")
    rng = random.Random(SEED)
    items = []
    for task in task_names(ctx.data_dir):
        examples = _load_examples(os.path.join(root, "bbh", f"{task}.json"))
        picked = rng.sample(range(len(examples)), PER_TASK) if len(examples) >= PER_TASK else range(len(examples))
        head = task_prompt(os.path.join(root, "cot-prompts", f"{task}.txt"), cot).strip() + "\n\nQ: "
        for i in picked:
            question = head + examples[i]["input"]
            items.append(Item(id=f"{task}/{i}", prompt=ctx.render(question, "A:", question + "\nA:"),
                              gold=examples[i]["target"], meta={"task": task, "protocol": ctx.protocol}))
    return items


def extract(text: str, item: Item) -> str:
    first = text.strip().split("\n\n")[0].strip()
    if item.meta.get("protocol") == "paper":
        found = _PAPER_RE.search(first)
    else:
        found = _FIXED_RE.search(text)
    return found.group(1).strip() if found else first


def score(records, **_options) -> dict:
    """Exact match per task (0-100), their unweighted mean, and each record's correctness (`per_item`)."""
    records = list(records)
    flags = metrics.exact_match_flags([r["answer"] for r in records], [r["gold"] for r in records])
    by_task: dict[str, list[bool]] = {}
    for r, ok in zip(records, flags):
        by_task.setdefault(r["meta"]["task"], []).append(ok)
    per_task = {t: 100.0 * sum(oks) / len(oks) for t, oks in sorted(by_task.items())}
    return {"exact_match": sum(per_task.values()) / len(per_task) if per_task else 0.0,
            "per_task": per_task, "count": len(records), "per_item": {r["id"]: ok for r, ok in zip(records, flags)}}


def _setting(cot: bool) -> Setting:
    return Setting(name="bbh_cot" if cot else "bbh_direct", group="bbh", column="BBH CoT" if cot else "BBH Direct",
                   metric="exact_match", kind="generate", chat=True, items=lambda ctx: _items(ctx, cot),
                   score=score, decoding=Decoding(max_new_tokens=512, stop=() if cot else ("\n\n",)),
                   extract=extract, subset_key=lambda item: item.meta["task"])


SETTINGS = (_setting(cot=False), _setting(cot=True))
