"""`python -m camel_jax.data stats`: what a mixture becomes at a max length — drops, rows, packing efficiency,
steps per epoch — before a run is configured around it.

The cheap checks (the mixture's name and files, the tokenizer, the numbers) run before anything is tokenized, and
every user error is one line (camel_jax.cli). The mixture is tokenized once; padded and packed plans share it.
"""
from __future__ import annotations

import argparse
import tempfile
from typing import Sequence

import numpy as np

from camel_jax import cli
from camel_jax.data import mixtures as M

PROG = "python -m camel_jax.data stats"


def add_stats_command(subparsers) -> None:
    """Register `stats` on `python -m camel_jax.data`'s subparsers (func(args) -> exit code)."""
    p = subparsers.add_parser("stats", help="what a mixture becomes at a max length (drops, rows, packing, steps)",
                              description="Tokenize a mixture and report drops, rows, packing efficiency and steps.")
    p.add_argument("--mixture", required=True, help="mixture/task/dataset name, tulu_mix_sample or a .jsonl path")
    p.add_argument("--tokenizer", required=True, help="tokenizer.model file or tokenizer folder")
    p.add_argument("--data_dir", default=None, help=f"prepared data (default ${M.DATA_DIR_ENV})")
    p.add_argument("--max_seq_length", type=int, default=2048)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--newline_after_eos", action="store_true")
    p.set_defaults(func=run_stats)


def _check(a: argparse.Namespace) -> None:
    if a.max_seq_length < 2:
        raise cli.UsageError(f"--max_seq_length={a.max_seq_length}: must be at least 2")
    if a.batch_size < 1:
        raise cli.UsageError(f"--batch_size={a.batch_size}: must be at least 1")
    try:
        M.source_files(a.mixture, a.data_dir)  # the name, the data dir and every file, before anything is read
    except M.MixtureError as e:
        raise cli.UsageError(f"--mixture {a.mixture}: {e}") from None


def run_stats(a: argparse.Namespace) -> int:
    _check(a)
    from camel_jax.data.pipeline import TrainData, mixture_records
    from camel_jax.model.tokenizer import load_tokenizer

    try:
        tokenizer = load_tokenizer(a.tokenizer)
    except (OSError, ValueError, RuntimeError) as e:
        raise cli.UsageError(f"--tokenizer {a.tokenizer}: {cli.describe(e)}") from None
    records = mixture_records(a.mixture, a.data_dir)
    with tempfile.TemporaryDirectory(prefix="camel_jax_stats_") as cache:  # tokenize once for both plans
        for packing in (False, True):
            data = TrainData(records, tokenizer, a.max_seq_length, a.batch_size, packing=packing,
                             newline_after_eos=a.newline_after_eos, prefetch=0, cache_dir=cache)
            print(data.describe())
    names, counts = np.unique(np.asarray(data.dataset_names)[data.dataset_idx], return_counts=True)
    print("examples per dataset: " + ", ".join(f"{n or '?'}={c}" for n, c in zip(names, counts)))
    n = data.examples.lengths
    print(f"tokens per example: mean {n.mean():.1f}, median {np.median(n):.0f}, max {n.max()}, "
          f"at max_seq_length {(n >= a.max_seq_length).sum()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone `stats` (the same as `python -m camel_jax.data stats ...`)."""
    parser = cli.ArgumentParser(prog="python -m camel_jax.data")
    add_stats_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stats", *(argv or [])])
    return cli.run(PROG, run_stats, args, errors=(ValueError,))
