"""GGUF (llama.cpp) -> camel_jax, through transformers: `convert import-hf DIR OUT --gguf_file NAME`.

Why through transformers and not a GGUF reader of our own: transformers already maps GGUF tensor names, undoes
llama.cpp's q/k row permutation and dequantizes every quantization type to fp32; re-implementing that would be a
second, less tested copy. The GGUF is loaded with `from_pretrained(dir, gguf_file=...)` (needs the `gguf` and
`accelerate` packages), saved as an ordinary fp32 HF folder, and imported by `convert.hf.import_hf`, so the
weights camel_jax holds are exactly the dequantized ones transformers runs. transformers marks a GGUF load as
quantized (`hf_quantizer`, `config.quantization_config`) and refuses to save it; both marks are cleared first, which
is right: the tensors are plain fp32 by then. The tokenizer (with its `chat_template`) is saved beside the weights
and lands in the checkpoint's tokenizer/ like any HF import.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

from camel_jax.convert.hf import ConversionError, import_hf
from camel_jax.model.config import LlamaConfig


def gguf_to_hf(src_dir: str, gguf_file: str, hf_dir: str) -> str:
    """Dequantize SRC_DIR/GGUF_FILE into an fp32 HF folder (weights, config, tokenizer with its chat template)."""
    path = os.path.join(src_dir, gguf_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such GGUF file")
    missing = [m for m in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:  # transformers needs all three; say so before it fails deep inside
        raise ConversionError(f"reading GGUF files needs {', '.join(missing)} (pip install transformers gguf "
                              f"accelerate)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    except (ValueError, OSError, KeyError) as e:
        raise ConversionError(f"{path}: transformers cannot read it ({e})") from None
    model.hf_quantizer = None  # dequantized already; transformers would refuse to save a "quantized" model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # else reloading the folder would look for the GGUF again
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    return hf_dir


def import_gguf(src_dir: str, gguf_file: str, ckpt_dir: str, param_dtype: str = "float32",
                hf_dir: str | None = None) -> LlamaConfig:
    """SRC_DIR/GGUF_FILE -> camel_jax checkpoint. `hf_dir`: keep the intermediate HF folder there (default: a
    temporary folder, deleted)."""
    if hf_dir is not None:
        return import_hf(gguf_to_hf(src_dir, gguf_file, hf_dir), ckpt_dir, param_dtype=param_dtype)
    with tempfile.TemporaryDirectory(prefix="camel_jax_gguf_") as tmp:
        return import_hf(gguf_to_hf(src_dir, gguf_file, tmp), ckpt_dir, param_dtype=param_dtype)
