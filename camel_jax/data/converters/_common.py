"""Helpers shared by converters: resolving `--raw` to input files in a listing-order-independent way."""
from __future__ import annotations

import glob
import os
from typing import Sequence

from camel_jax.data.records import RecordError


def input_files(raw: str, reference_names: Sequence[str], patterns: Sequence[str] = (), many: bool = False,
                what: str = "dataset") -> list[str]:
    """Files to read for `raw` (a file or a folder), never depending on os.listdir order.

    A folder yields the reference's file names that exist (in the reference's order); failing those, the files
    matching `patterns`, sorted by name. Unless `many`, a folder must resolve to exactly one file.
    """
    if os.path.isfile(raw):
        return [raw]
    if not os.path.isdir(raw):
        raise RecordError(f"{raw}: no such file or folder (--raw for {what})")
    found = [os.path.join(raw, n) for n in reference_names if os.path.isfile(os.path.join(raw, n))]
    if not found:
        found = sorted({p for pat in patterns for p in glob.glob(os.path.join(raw, pat)) if os.path.isfile(p)})
    if not found:
        raise RecordError(f"{raw}: no input file for {what}: expected one of {list(reference_names)}"
                          + (f" or files matching {list(patterns)}" if patterns else ""))
    if len(found) > 1 and not many:
        raise RecordError(f"{raw}: several candidate files for {what} ({[os.path.basename(p) for p in found]}); "
                          f"pass the file itself as --raw")
    return found
