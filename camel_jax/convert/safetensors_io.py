"""safetensors files as numpy arrays, through the safetensors library (bfloat16 as ml_dtypes.bfloat16).

Reading is `safetensors.safe_open(path, framework="np")`: the header at open, each tensor (`get`) or any slice of
one (`get_slice(name)[rows, cols]`, e.g. one host's shards of a 65B checkpoint) read only when asked for. The
library's numpy backend returns bfloat16 once ml_dtypes is imported (it names the dtype "bfloat16", which numpy
only knows after that import), so this module imports it first. Writing is the library's `save_file`, one file per
call; it takes the arrays' buffers without copying, so an export holds one shard (≤ --max_shard_size) beyond the
model. What this module adds: errors that name the file, and the shard plan checked tensor by tensor.
"""
from __future__ import annotations

from typing import Any, Iterable

import ml_dtypes  # noqa: F401  (registers "bfloat16" with numpy, which safe_open's numpy backend relies on)
import numpy as np


def np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


class SafetensorsFile:
    """One open .safetensors file (memory-mapped by the library; unmapped when this object is dropped)."""

    def __init__(self, path: str):
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            self._f = safe_open(path, framework="np")
        except SafetensorError as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        self.metadata = self._f.metadata() or {}

    def keys(self) -> list[str]:
        return list(self._f.keys())

    def get(self, name: str) -> np.ndarray:
        """One tensor as a numpy array of its own (a copy: valid after the file is closed)."""
        return self._f.get_tensor(name)

    def get_slice(self, name: str) -> Any:
        """A lazy view: `.get_shape()`, `.get_dtype()`, and indexing (`[a:b]`, `[:, c:d]`) reading only that part."""
        return self._f.get_slice(name)


def write_safetensors(path: str, tensors: Iterable[tuple[str, np.ndarray]], specs: dict[str, tuple[tuple, np.dtype]],
                      metadata: dict[str, str] | None = None) -> int:
    """Write the (name, array) pairs of `tensors`, which must be exactly `specs` (name -> (shape, dtype)) in order,
    as one safetensors file. Returns the number of data bytes written."""
    from safetensors.numpy import save_file

    names, out = list(specs), {}
    for k, (name, arr) in enumerate(tensors):
        if k >= len(names):
            raise ValueError(f"{path}: got more than the {len(names)} planned tensors")
        shape, dtype = specs[names[k]]
        if name != names[k] or tuple(arr.shape) != tuple(shape) or arr.dtype != np.dtype(dtype):
            raise ValueError(f"{path}: tensor {name} {arr.shape} {arr.dtype} does not match the planned "
                             f"{names[k]} {shape} {dtype}")
        out[name] = np.ascontiguousarray(arr)
    if len(out) != len(names):
        raise ValueError(f"{path}: got {len(out)} tensors, planned {len(names)}")
    save_file(out, path, metadata=metadata or {"format": "pt"})
    return sum(a.nbytes for a in out.values())
