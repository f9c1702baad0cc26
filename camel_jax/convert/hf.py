"""Hugging Face LLaMA <-> camel_jax: config mapping, tensor names and shapes, and the import-hf/export-hf commands.

camel_jax's rotary layout is HF's rotate_half, so every HF weight maps by a transpose at most ([out, in] torch
Linear weights become [in, out] Flax kernels); q/k rows are never permuted here. Layer tensors are written
into preallocated [L, ...] stacks one tensor at a time, so an import holds one copy of the model plus one tensor.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from camel_jax.model_config import LlamaConfig

# (HF name template, our path, transpose). "{i}" marks a per-layer tensor stacked on a leading layer axis.
_LAYER = "model.layers.{i}."
TENSOR_MAP: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("model.embed_tokens.weight", ("embed", "embedding"), False),
    (_LAYER + "self_attn.q_proj.weight", ("layers", "attn", "q", "kernel"), True),
    (_LAYER + "self_attn.k_proj.weight", ("layers", "attn", "k", "kernel"), True),
    (_LAYER + "self_attn.v_proj.weight", ("layers", "attn", "v", "kernel"), True),
    (_LAYER + "self_attn.o_proj.weight", ("layers", "attn", "o", "kernel"), True),
    (_LAYER + "mlp.gate_proj.weight", ("layers", "mlp", "gate", "kernel"), True),
    (_LAYER + "mlp.up_proj.weight", ("layers", "mlp", "up", "kernel"), True),
    (_LAYER + "mlp.down_proj.weight", ("layers", "mlp", "down", "kernel"), True),
    (_LAYER + "input_layernorm.weight", ("layers", "attn_norm", "scale"), False),
    (_LAYER + "post_attention_layernorm.weight", ("layers", "mlp_norm", "scale"), False),
    ("model.norm.weight", ("final_norm", "scale"), False),
    ("lm_head.weight", ("lm_head", "kernel"), True),
)
LLAMA_ARCHITECTURES = ("LlamaForCausalLM", "LlamaModel", "LLaMAForCausalLM")


class ConversionError(ValueError):
    """Bad conversion input; the message names the offending file or tensor."""


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


# ----------------------------------------------------------------------------------------------------- config

def config_from_hf(d: Mapping[str, Any], source: str = "config.json", **overrides: Any) -> LlamaConfig:
    """LlamaConfig from a HF config.json dict (transformers 4.x `rope_theta` or 5.x `rope_parameters`)."""
    archs = d.get("architectures") or []
    if d.get("model_type") != "llama" and not any(a in LLAMA_ARCHITECTURES for a in archs):
        raise ConversionError(f"{source}: unknown architecture (model_type={d.get('model_type')!r}, "
                              f"architectures={archs}); only LLaMA models are supported")
    errs = []
    if d.get("hidden_act", "silu") != "silu":
        errs.append(f"hidden_act {d['hidden_act']!r} (only silu)")
    for f in ("attention_bias", "mlp_bias"):
        if d.get(f):
            errs.append(f"{f}=true (LLaMA has no biases)")
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in (None, "default"):
        errs.append(f"rope scaling {kind!r} (only plain rotary embeddings)")
    if errs:
        raise ConversionError(f"{source}: unsupported LLaMA variant: " + "; ".join(errs))
    try:
        heads, hidden = int(d["num_attention_heads"]), int(d["hidden_size"])
        kv = int(d.get("num_key_value_heads") or heads)
        hd = d.get("head_dim")
        eos = d.get("eos_token_id", 2)
        cfg = LlamaConfig(
            vocab_size=int(d["vocab_size"]), hidden_size=hidden, intermediate_size=int(d["intermediate_size"]),
            num_layers=int(d["num_hidden_layers"]), num_heads=heads, num_kv_heads=None if kv == heads else kv,
            head_dim=None if hd is None or int(hd) == hidden // heads else int(hd),
            max_seq_len=int(d.get("max_position_embeddings", 2048)),
            rope_theta=float(d.get("rope_theta", rope.get("rope_theta", 10000.0))),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(d.get("tie_word_embeddings", False)),
            bos_token_id=int(d.get("bos_token_id", 1) if d.get("bos_token_id") is not None else 1),
            eos_token_id=int((eos[0] if isinstance(eos, list) else eos) if eos is not None else 2))
    except KeyError as e:
        raise ConversionError(f"{source}: missing field {e.args[0]!r}") from None
    return cfg.replace(**overrides).validate()


def hf_config_dict(cfg: LlamaConfig, dtype: str = "float32") -> dict:
    """A config.json dict that transformers 4.x and 5.x both read as this model."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.dim_per_head,
        "max_position_embeddings": cfg.max_seq_len, "rope_theta": float(cfg.rope_theta), "rope_scaling": None,
        "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": None,
        "use_cache": True, "torch_dtype": dtype,
    }


# ----------------------------------------------------------------------------------------------------- tensors

def hf_tensor_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every HF tensor name of this model with its [out, in] shape."""
    d, f, v, hd, L = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.dim_per_head, cfg.num_layers
    per_layer = {
        "self_attn.q_proj.weight": (cfg.num_heads * hd, d), "self_attn.k_proj.weight": (cfg.kv_heads * hd, d),
        "self_attn.v_proj.weight": (cfg.kv_heads * hd, d), "self_attn.o_proj.weight": (d, cfg.num_heads * hd),
        "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d), "mlp.down_proj.weight": (d, f),
        "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
    }
    out = {"model.embed_tokens.weight": (v, d)}
    for i in range(L):
        out.update({_LAYER.format(i=i) + k: s for k, s in per_layer.items()})
    out["model.norm.weight"] = (d,)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = (v, d)
    return out


def _entries(cfg: LlamaConfig) -> Iterator[tuple[str, tuple[str, ...], int | None, bool]]:
    """(HF name, our path, layer index or None, transpose) for every tensor, in HF's usual order."""
    for template, path, transpose in TENSOR_MAP:
        if path[0] == "lm_head" and cfg.tie_embeddings:
            continue
        if "{i}" in template:
            for i in range(cfg.num_layers):
                yield template.format(i=i), path, i, transpose
        else:
            yield template, path, None, transpose


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def params_from_hf_state_dict(get_tensor: Callable[[str], Any] | Mapping[str, Any], cfg: LlamaConfig,
                              dtype: str | None = None) -> dict:
    """Our numpy parameter tree (scanned layout, `dtype` or cfg.param_dtype) from HF tensors.

    `get_tensor(name)` is called once per tensor and may return a memory map; each result is copied into its
    slot of a preallocated stack and dropped, so peak memory is one copy of the model plus one tensor."""
    fetch = get_tensor.__getitem__ if isinstance(get_tensor, Mapping) else get_tensor
    dt = _np_dtype(dtype or cfg.param_dtype)
    shapes = hf_tensor_shapes(cfg)
    params: dict = {}
    for name, path, layer, transpose in _entries(cfg):
        want = shapes[name]
        try:
            w = fetch(name)
        except KeyError:
            raise ConversionError(f"missing tensor {name!r}") from None
        w = np.asarray(w)
        if tuple(w.shape) != want:
            raise ConversionError(f"tensor {name!r} has shape {tuple(w.shape)}, the config implies {want}")
        w = w.T if transpose else w
        if layer is None:
            _set(params, path, np.array(w, dtype=dt))
            continue
        try:
            stack = _get(params, path)
        except KeyError:
            stack = np.empty((cfg.num_layers,) + w.shape, dt)
            _set(params, path, stack)
        stack[layer] = w
    return params


def iter_hf_tensors(params: Mapping, cfg: LlamaConfig, dtype: str | None = None
                    ) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, contiguous [out, in] array) one at a time, so an export never holds a second copy of the model."""
    dt = _np_dtype(dtype) if dtype else None
    for name, path, layer, transpose in _entries(cfg):
        w = np.asarray(_get(params, path) if layer is None else _get(params, path)[layer])
        w = w.T if transpose else w
        yield name, np.ascontiguousarray(w, dtype=dt or w.dtype)


def hf_state_dict_from_params(params: Mapping, cfg: LlamaConfig, dtype: str | None = None) -> dict[str, np.ndarray]:
    return dict(iter_hf_tensors(params, cfg, dtype))
