"""`python -m camel_jax.data <command>`: data tools as subcommands.

    prepare   convert one raw dataset to the unified messages jsonl and print the reconciled summary
    stats     what a mixture becomes at a max length: drops, rows, packing efficiency, steps

Add a command by writing `_add_<name>(subparsers)` that registers a parser with `set_defaults(func=...)` and
listing it in COMMANDS; `func(args)` returns the exit code and raises camel_jax.cli.UsageError (or a ValueError
naming the file, field or flag) for a user's mistake, which `main` reports as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from camel_jax import cli
from camel_jax.data.converters import DATASETS
from camel_jax.data.stats import add_stats_command

PROG = "python -m camel_jax.data"


def _prepare(args: argparse.Namespace) -> int:
    from camel_jax.data.prepare import default_out, prepare

    options = {k: v for k, v in {
        "tokenizer": args.tokenizer, "max_length": args.max_length, "super_ni_split": args.super_ni_split,
        "flan_templates": args.flan_templates, "n_shots": args.n_shots, "zero_shot": args.zero_shot,
        "few_shot": args.few_shot, "total": args.total}.items() if v is not None}
    if args.no_split:
        options["no_split"] = True
    out = args.out or default_out(args.dataset, args.data_dir)
    tally = prepare(args.dataset, args.raw, out, seed=args.seed, skip_bad_records=args.skip_bad_records, **options)
    print(tally.format())
    print(f"wrote {out}")
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(dict(tally.summary(), out=out, seed=args.seed), f, indent=1)
    return 0


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="convert a raw dataset to unified messages jsonl",
                       description="Convert one raw dataset (a file or its folder) to "
                                   '{"dataset", "id", "messages"} jsonl, deterministic for a seed.')
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--raw", required=True, help="raw file or folder (see each converter's docstring)")
    p.add_argument("--out", help="output .jsonl (default <data_dir>/<dataset>.jsonl)")
    p.add_argument("--data_dir", help="output folder when --out is not given (default $CAMEL_JAX_DATA_DIR)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip_bad_records", action="store_true",
                   help="skip and count bad records instead of stopping at the first one")
    p.add_argument("--summary_json", help="also write the summary as JSON here")
    g = p.add_argument_group("dataset options (defaults are the reference's)")
    g.add_argument("--tokenizer", help="sharegpt: tokenizer for splitting (default: LLaMA at $CAMEL_JAX_TOKENIZER "
                                       "or ../shared/data/llama_tokenizer)")
    g.add_argument("--max_length", type=int, help="sharegpt: token budget per chunk (2048)")
    g.add_argument("--no_split", action="store_true", help="sharegpt: input is already split")
    g.add_argument("--super_ni_split", help="super_ni: splits/<name>/train_tasks.txt (auto: xlingual, else default)")
    g.add_argument("--zero_shot", type=int, help="super_ni: zero-shot per task (60); cot: zero-shot sample (50000)")
    g.add_argument("--few_shot", type=int, help="super_ni: few-shot per task (20); cot: few-shot sample (50000)")
    g.add_argument("--n_shots", type=int, help="super_ni / cot from TSVs: exemplars per few-shot example (2)")
    g.add_argument("--flan_templates", help="cot from TSVs: FLAN's flan/v2/templates.py (default <raw>/templates.py)")
    g.add_argument("--total", type=int, help="flan_v2 resampling from submix files: total examples (100000)")
    p.set_defaults(func=_prepare)


COMMANDS = (_add_prepare, add_stats_command)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # ValueError covers RecordError and MixtureError (they name the file and line, or the name); OSError: a raw
    # file that cannot be read (a corrupt .gz), named by its message.
    return cli.run(f"{PROG} {args.command}", args.func, args, errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
