"""The one table of TÜLU datasets, tasks and mixtures, and where their prepared files live.

Tasks are `tulu_<dataset>` for the 12 datasets of the paper (Wang et al. 2023, Table 1). Mixtures, as in
open-instruct (open_instruct.md §2.4), are plain concatenations of the prepared files — every example once per epoch,
which is mixing "by example count". Sampling by rate (fixed weights per dataset) is an option for experiments.

Prepared data: `<data_dir>/<dataset>.jsonl` in the unified format, data_dir from a flag or `$CAMEL_JAX_DATA_DIR`.
`tulu_mix_sample` names the small real sample bundled with the package (camel_jax/assets/tulu_mix_sample.jsonl).
Pure Python: the training path imports this; SeqIO registration lives in seqio_tasks.py.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

DATA_DIR_ENV = "CAMEL_JAX_DATA_DIR"

DATASETS: tuple[str, ...] = (
    "super_ni", "cot", "flan_v2", "dolly", "oasst1", "self_instruct", "unnatural_instructions", "stanford_alpaca",
    "code_alpaca", "gpt4_alpaca", "baize", "sharegpt")

# Paper Table 1 instance counts, as recalled in open_instruct.md §2.4 [recalled]: only for estimates (steps per
# epoch before the data is prepared); everything else uses the real counts of the prepared files.
PAPER_COUNTS: dict[str, int] = {
    "super_ni": 96_913, "cot": 100_000, "flan_v2": 100_000, "dolly": 15_011, "oasst1": 34_795,
    "self_instruct": 82_439, "unnatural_instructions": 68_478, "stanford_alpaca": 52_002, "code_alpaca": 20_022,
    "gpt4_alpaca": 52_002, "baize": 210_311, "sharegpt": 168_864}

HUMAN_MIX = ("flan_v2", "cot", "dolly", "oasst1")
MIXTURES: dict[str, tuple[str, ...]] = {
    "tulu_human_mix": HUMAN_MIX,
    "tulu_human_gpt_mix": HUMAN_MIX + ("gpt4_alpaca", "code_alpaca", "sharegpt"),
}
SAMPLE_MIXTURE = "tulu_mix_sample"
SAMPLE_JSONL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                            "tulu_mix_sample.jsonl")
TASK_PREFIX = "tulu_"


class MixtureError(ValueError):
    """An unknown dataset/mixture name, a missing data dir or file, or bad rates; the message says which."""


def task_name(dataset: str) -> str:
    if dataset not in DATASETS:
        raise MixtureError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return TASK_PREFIX + dataset


def known_names() -> tuple[str, ...]:
    return DATASETS + tuple(task_name(d) for d in DATASETS) + tuple(MIXTURES) + (SAMPLE_MIXTURE,)


def datasets_of(name: str) -> tuple[str, ...]:
    """The datasets a name stands for: a mixture, a task `tulu_<dataset>` or a bare dataset name."""
    if name in MIXTURES:
        return MIXTURES[name]
    bare = name[len(TASK_PREFIX):] if name.startswith(TASK_PREFIX) else name
    if bare in DATASETS:
        return (bare,)
    raise MixtureError(f"unknown dataset or mixture {name!r}; known: {', '.join(known_names())}, or a .jsonl path")


def data_dir(flag: str | None = None, flag_name: str = "--data_dir") -> str:
    """The prepared-data folder: the flag if given, else $CAMEL_JAX_DATA_DIR. `flag_name` is how the caller's
    command spells that flag (messages never suggest one it lacks)."""
    path = flag or os.environ.get(DATA_DIR_ENV, "")
    if not path:
        raise MixtureError(f"no data dir: pass {flag_name} or set ${DATA_DIR_ENV} to the folder holding the "
                           f"prepared <dataset>.jsonl files")
    if not os.path.isdir(path):
        src = flag_name if flag else f"${DATA_DIR_ENV}"
        raise MixtureError(f"data dir {path!r} (from {src}) is not a directory")
    return path


def dataset_path(dataset: str, directory: str) -> str:
    task_name(dataset)  # validates the name
    return os.path.join(directory, f"{dataset}.jsonl")


def source_files(name: str, directory: str | None = None, flag_name: str = "--data_dir") -> list[tuple[str, str]]:
    """[(dataset, path)] for a mixture/task/dataset name, SAMPLE_MIXTURE or a .jsonl path; an unknown name, then a
    missing data dir or file, raise MixtureError.

    For SAMPLE_MIXTURE and explicit paths the dataset is "" (each record's own "dataset" field then counts).
    """
    if name == SAMPLE_MIXTURE:
        pairs = [("", SAMPLE_JSONL)]
    elif name.endswith(".jsonl"):
        pairs = [("", name)]
    else:
        datasets = datasets_of(name)
        d = data_dir(directory, flag_name)
        pairs = [(ds, dataset_path(ds, d)) for ds in datasets]
    missing = [p for _, p in pairs if not os.path.isfile(p)]
    if missing:
        hint = "" if name == SAMPLE_MIXTURE or name.endswith(".jsonl") else (
            " (prepare them with `python -m camel_jax.data prepare --dataset NAME --raw PATH --out FILE.jsonl`)")
        raise MixtureError(f"{name}: missing prepared file(s) {', '.join(missing)}{hint}")
    return pairs


def parse_rates(spec: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """'dolly:2,oasst1:1' or a mapping -> {dataset: weight}; None/'' -> None."""
    if not spec:
        return None
    if isinstance(spec, str):
        out = {}
        for item in spec.split(","):
            name, sep, value = item.partition(":")
            try:
                out[name.strip()] = float(value) if sep else float("nan")
            except ValueError:
                raise MixtureError(f"rates {spec!r}: {item!r} is not dataset:weight") from None
            if not sep:
                raise MixtureError(f"rates {spec!r}: {item!r} is not dataset:weight")
        spec = out
    rates = {str(k): float(v) for k, v in spec.items()}
    bad = [k for k, v in rates.items() if not v >= 0]
    if bad or not sum(rates.values()) > 0:
        raise MixtureError(f"rates {spec!r}: weights must be >= 0 and not all 0")
    return rates


def mixture_rates(counts: Mapping[str, int], by_rate: bool = False,
                  rates: Mapping[str, float] | None = None) -> dict[str, float]:
    """Normalised sampling rate per dataset.

    Concatenation (by_rate=False, the paper): rate ∝ number of examples. By rate: the given weights, or equal
    weights when none are given. Datasets with no examples get rate 0.
    """
    names = [k for k in counts]
    if not by_rate:
        weights = {k: float(counts[k]) for k in names}
    else:
        if rates:
            unknown = sorted(set(rates) - set(names))
            if unknown:
                raise MixtureError(f"rates name dataset(s) {unknown} not in this mixture ({', '.join(names)})")
        weights = {k: float(rates.get(k, 0.0)) if rates else 1.0 for k in names}
        weights = {k: (w if counts[k] > 0 else 0.0) for k, w in weights.items()}
    total = sum(weights.values())
    if not total > 0:
        raise MixtureError(f"mixture has no examples to sample (counts {dict(counts)})")
    return {k: w / total for k, w in weights.items()}


def rate_counts(counts: Mapping[str, int], rates: Mapping[str, float], total: int | None = None) -> dict[str, int]:
    """Examples per dataset for one epoch of `total` examples (default: all examples) under `rates`.

    Largest-remainder rounding, so the counts sum to `total` exactly and ties go to the earlier dataset.
    """
    n = sum(counts.values()) if total is None else int(total)
    raw = {k: rates.get(k, 0.0) * n for k in counts}
    out = {k: int(v) for k, v in raw.items()}
    rest = n - sum(out.values())
    order: Sequence[str] = sorted(counts, key=lambda k: (-(raw[k] - out[k]), list(counts).index(k)))
    for k in order[:rest]:
        out[k] += 1
    return out
