"""Minimal streaming safetensors reader and writer over numpy (bfloat16 through ml_dtypes).

Why not `safetensors.safe_open`: its numpy backend cannot return bfloat16 (most LLaMA checkpoints) and its flax
backend would place tensors on an accelerator. The format is 8 bytes of little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}}, then the raw little-endian bytes. Reading seeks to one tensor and
reads just it (no memory map whose touched pages would stay resident); writing appends one tensor at a time.
"""
from __future__ import annotations

import json
import struct
from typing import Iterable

import numpy as np

_CODES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _code(dtype: np.dtype) -> str:
    for code, name in _CODES.items():
        if np_dtype(name) == dtype:
            return code
    raise ValueError(f"dtype {dtype} has no safetensors code")


class SafetensorsFile:
    """Lazy access to one .safetensors file: the header at open, each tensor's bytes only when asked for."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", raw)
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}: not a safetensors file (bad JSON header: {e})") from None
        self.metadata = header.pop("__metadata__", None) or {}
        self.header = header
        self._offset = 8 + n

    def keys(self) -> list[str]:
        return list(self.header)

    def get(self, name: str) -> np.ndarray:
        """One tensor, freshly read from disk."""
        info = self.header[name]
        if info["dtype"] not in _CODES:
            raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        dtype = np_dtype(_CODES[info["dtype"]])
        begin, end = info["data_offsets"]
        count = (end - begin) // dtype.itemsize
        if count != int(np.prod(info["shape"], dtype=np.int64)):
            raise ValueError(f"{self.path}: tensor {name!r} has {end - begin} bytes for shape {info['shape']}")
        with open(self.path, "rb") as f:
            f.seek(self._offset + begin)
            arr = np.fromfile(f, dtype=dtype, count=count)
        if arr.size != count:
            raise ValueError(f"{self.path}: truncated file (tensor {name!r} ends past the end)")
        return arr.reshape(info["shape"])


def write_safetensors(path: str, tensors: Iterable[tuple[str, np.ndarray]], specs: dict[str, tuple[tuple, np.dtype]],
                      metadata: dict[str, str] | None = None) -> int:
    """Write `tensors` (an iterator, consumed one at a time) whose names, shapes and dtypes are `specs`, in order.
    Returns the number of data bytes written."""
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in specs.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _code(np.dtype(dtype)), "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        names, count = list(specs), 0
        for k, (name, arr) in enumerate(tensors):
            shape, dtype = specs[names[k]]
            if name != names[k] or tuple(arr.shape) != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise ValueError(f"{path}: tensor {name} {arr.shape} {arr.dtype} does not match the planned "
                                 f"{names[k]} {shape} {dtype}")
            f.write(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)  # little-endian hosts only
            count += 1
    if count != len(names):
        raise ValueError(f"{path}: got {count} tensors, planned {len(names)}")
    return offset
