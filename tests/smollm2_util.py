"""SmolLM2-135M-Instruct (../shared/data/smollm2, a Q4_1 GGUF) as the real test model: converted once per test
session through `convert.gguf.import_gguf`, keeping the dequantized HF folder so transformers runs the very same
fp32 weights camel_jax imported. Use the `smollm2` fixture (tests/conftest.py); loaders below are cached."""
from __future__ import annotations

import dataclasses
import functools
import pathlib

GGUF_DIR = "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FRANCE = "What is the capital of France? Answer in one sentence."


@dataclasses.dataclass(frozen=True)
class SmolLM2:
    hf_dir: str  # the dequantized fp32 HF folder (weights, config, tokenizer)
    ckpt_dir: str  # the camel_jax checkpoint imported from it

    @property
    def tokenizer_dir(self) -> str:
        return str(pathlib.Path(self.ckpt_dir) / "tokenizer")


def convert(shared_data: pathlib.Path, tmp: pathlib.Path) -> SmolLM2:
    import pytest

    src = shared_data / GGUF_DIR
    if not (src / GGUF_FILE).is_file():
        pytest.skip(f"needs {src / GGUF_FILE} (SmolLM2-135M-Instruct; present in CI)")
    pytest.importorskip("gguf", reason="reading GGUF needs the gguf package (pip install -e '.[test]')")
    pytest.importorskip("accelerate", reason="transformers' GGUF loading needs accelerate")
    from camel_jax.convert.gguf import import_gguf

    import_gguf(str(src), GGUF_FILE, str(tmp / "ckpt"), hf_dir=str(tmp / "hf"))
    return SmolLM2(hf_dir=str(tmp / "hf"), ckpt_dir=str(tmp / "ckpt"))


@functools.lru_cache(maxsize=1)
def hf_model(hf_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(hf_dir, dtype="float32").eval()


@functools.lru_cache(maxsize=1)
def camel_params(ckpt_dir: str):
    """(params as device arrays, cfg in fp32 compute)."""
    import jax

    from camel_jax import params_io

    params, cfg = params_io.load_params(ckpt_dir)
    return jax.device_put(params), cfg.replace(dtype="float32")
