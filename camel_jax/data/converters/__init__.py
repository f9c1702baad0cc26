"""Raw dataset -> unified messages converters, one module per raw-format family.

Every converter is `convert(name, raw, rng, tally, **options) -> Iterator[dict]` yielding
`{"dataset", "id", "messages"}` examples; modules are imported only when their dataset is asked for.
"""
from __future__ import annotations

import importlib
from typing import Callable

# dataset name -> converter module (inside this package)
DATASETS = {
    "super_ni": "super_ni",
    "cot": "flan",
    "flan_v2": "flan",
    "dolly": "alpaca_like",
    "oasst1": "oasst",
    "self_instruct": "alpaca_like",
    "unnatural_instructions": "alpaca_like",
    "stanford_alpaca": "alpaca_like",
    "code_alpaca": "alpaca_like",
    "gpt4_alpaca": "alpaca_like",
    "baize": "baize",
    "sharegpt": "sharegpt",
}


def get_converter(name: str) -> Callable:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return importlib.import_module(f"{__name__}.{DATASETS[name]}").convert
