"""Convert one raw dataset into the unified jsonl `{"dataset", "id", "messages": [{"role", "content"}]}`.

Each dataset gets its own `random.Random(seed)` (never the global stream), and converters sort or fix the order of
their input files, so the output depends only on the raw files and the seed. The returned Tally reconciles
records read = converted + dropped (by the reference's rules) + bad (skipped with skip_bad_records).
"""
from __future__ import annotations

import inspect
import os
import random
from typing import Iterator, Optional

from camel_jax.data.converters import DATASETS, get_converter
from camel_jax.data.records import ROLES, Tally, write_jsonl

ENV_DATA_DIR = "CAMEL_JAX_DATA_DIR"


def iter_examples(dataset: str, raw: str, seed: int = 42, tally: Optional[Tally] = None,
                  **options) -> Iterator[dict]:
    """Unified examples of `dataset` read from `raw` (a file or a folder), lazily."""
    convert = get_converter(dataset)
    accepted = set(inspect.signature(convert).parameters) - {"name", "raw", "rng", "tally"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"option(s) {', '.join('--' + u for u in unknown)} do not apply to {dataset} (it takes: "
                         f"{', '.join('--' + a for a in sorted(accepted)) or 'no options'})")
    tally = tally if tally is not None else Tally(dataset)
    for ex in convert(dataset, raw, random.Random(seed), tally, **options):
        _assert_unified(ex, dataset)
        yield ex


def convert_dataset(dataset: str, raw: str, seed: int = 42, skip_bad_records: bool = False,
                    **options) -> tuple[list[dict], Tally]:
    tally = Tally(dataset, skip_bad=skip_bad_records)
    examples = list(iter_examples(dataset, raw, seed, tally, **options))
    tally.written = len(examples)
    tally.check()
    return examples, tally


def prepare(dataset: str, raw: str, out: str, seed: int = 42, skip_bad_records: bool = False,
            **options) -> Tally:
    """Convert and write `out` atomically; returns the reconciled Tally."""
    tally = Tally(dataset, skip_bad=skip_bad_records)
    write_jsonl(out, iter_examples(dataset, raw, seed, tally, **options), tally)
    tally.check()
    return tally


def default_out(dataset: str, data_dir: Optional[str] = None) -> str:
    """<data_dir>/<dataset>.jsonl with data_dir from the argument or $CAMEL_JAX_DATA_DIR."""
    data_dir = data_dir or os.environ.get(ENV_DATA_DIR)
    if not data_dir:
        raise ValueError(f"no output: pass --out FILE.jsonl, --data_dir DIR or set ${ENV_DATA_DIR}")
    return os.path.join(data_dir, f"{dataset}.jsonl")


def _assert_unified(ex: dict, dataset: str) -> None:
    """Converters must only emit well-formed examples; a failure here is a bug in a converter, not in the data."""
    ok = (set(ex) == {"dataset", "id", "messages"} and ex["dataset"] == dataset and isinstance(ex["id"], str)
          and ex["messages"] and all(set(m) == {"role", "content"} and m["role"] in ROLES
                                     and isinstance(m["content"], str) for m in ex["messages"]))
    if not ok:
        raise AssertionError(f"converter for {dataset} produced a malformed example: {str(ex)[:300]}")


__all__ = ["DATASETS", "iter_examples", "convert_dataset", "prepare", "default_out", "ENV_DATA_DIR"]
