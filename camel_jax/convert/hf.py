"""Hugging Face LLaMA <-> camel_jax: config mapping, tensor names and shapes, and the import-hf/export-hf commands.

camel_jax's rotary layout is HF's rotate_half, so every HF weight maps by a transpose at most ([out, in] torch
Linear weights become [in, out] Flax kernels); q/k rows are never permuted here. Layer tensors are written
into preallocated [L, ...] stacks one tensor at a time, so an import holds one copy of the model plus one tensor.
The embedding and head get zero rows/columns up to `padded_vocab` on import and lose them on export (HF sees the
real vocab_size, e.g. TÜLU's 32,001), so import -> export is bit-exact (model/vocab.py).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from camel_jax import params_io
from camel_jax.convert.safetensors_io import SafetensorsFile, np_dtype, write_safetensors
from camel_jax.data.chat_format import chat_template as tulu_chat_template
from camel_jax.model.config import LlamaConfig
from camel_jax.model.vocab import pad_vocab, trim_vocab

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
VOCAB_AXIS = {("embed", "embedding"): 0, ("lm_head", "kernel"): 1}  # the vocabulary axis in our layout


class ConversionError(ValueError):
    """Bad conversion input; the message names the offending file or tensor."""


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
    """(HF name, our path, layer index or None, transpose) for every tensor, layer by layer as HF orders them."""
    glob = [e for e in TENSOR_MAP if "{i}" not in e[0] and not (e[1][0] == "lm_head" and cfg.tie_embeddings)]
    yield glob[0][0], glob[0][1], None, glob[0][2]  # embeddings first
    for i in range(cfg.num_layers):
        for template, path, transpose in TENSOR_MAP:
            if "{i}" in template:
                yield template.format(i=i), path, i, transpose
    for name, path, transpose in glob[1:]:
        yield name, path, None, transpose


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
    dt = np_dtype(dtype or cfg.param_dtype)
    shapes = hf_tensor_shapes(cfg)
    params: dict = {}
    for name, path, layer, transpose in _entries(cfg):
        want = shapes[name]
        where = getattr(get_tensor, "source_of", lambda n: "")(name)
        try:
            w = fetch(name)
        except KeyError:
            raise ConversionError(f"{where}missing tensor {name!r}") from None
        w = np.asarray(w)
        if tuple(w.shape) != want:
            raise ConversionError(f"{where}tensor {name!r} has shape {tuple(w.shape)}, the config implies {want}")
        w = w.T if transpose else w
        if path in VOCAB_AXIS:  # zero rows (columns) appended up to the padded vocabulary
            _set(params, path, pad_vocab(w, cfg.padded_vocab, VOCAB_AXIS[path], dt))
            continue
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
    dt = np_dtype(dtype) if dtype else None
    for name, path, layer, transpose in _entries(cfg):
        w = np.asarray(_get(params, path) if layer is None else _get(params, path)[layer])
        if path in VOCAB_AXIS:
            w = trim_vocab(w, cfg.vocab_size, VOCAB_AXIS[path])
        w = w.T if transpose else w
        yield name, np.ascontiguousarray(w, dtype=dt or w.dtype)


def hf_state_dict_from_params(params: Mapping, cfg: LlamaConfig, dtype: str | None = None) -> dict[str, np.ndarray]:
    return dict(iter_hf_tensors(params, cfg, dtype))


# ----------------------------------------------------------------------------------------------------- files

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers some old checkpoints saved; recomputed, never loaded


def _torch_to_numpy(t: Any) -> np.ndarray:
    import torch

    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits, no copy
        return t.view(torch.int16).numpy().view(np_dtype("bfloat16"))
    return t.numpy()


class HFWeights:
    """Tensor name -> array over the weight files of a HF folder, opening each file when first needed."""

    def __init__(self, hf_dir: str):
        self.hf_dir = hf_dir
        self._files: dict[str, Any] = {}
        for index, single in (("model.safetensors.index.json", "model.safetensors"),
                              ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            if os.path.isfile(os.path.join(hf_dir, index)):
                self.source = os.path.join(hf_dir, index)
                try:
                    with open(self.source) as f:
                        wmap = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise ConversionError(f"{self.source}: not a weight index ({e!r})") from None
                self.where = {k: os.path.join(hf_dir, v) for k, v in wmap.items()}
                break
            if os.path.isfile(os.path.join(hf_dir, single)):
                self.source = os.path.join(hf_dir, single)
                self.where = {k: self.source for k in self._open(self.source)}
                break
        else:
            raise ConversionError(f"{hf_dir}: no weights found (expected model.safetensors[.index.json] or "
                                  f"pytorch_model.bin[.index.json])")

    def _open(self, path: str) -> Any:
        if path in self._files:
            return self._files[path]
        self._files.clear()  # one file open at a time: shards are read in order, and mapped pages get released
        if not os.path.isfile(path):
            raise ConversionError(f"{self.source}: names {path}, which does not exist")
        if path.endswith(".safetensors"):
            f = SafetensorsFile(path)
            opened = {k: (lambda k=k, f=f: f.get(k)) for k in f.keys()}
        else:
            try:
                import torch
            except ImportError:
                raise ConversionError(f"{path}: reading pytorch_model*.bin needs torch (pip install torch "
                                      f"--index-url https://download.pytorch.org/whl/cpu), or convert to "
                                      f"safetensors first") from None
            try:  # weights_only: tensors and plain containers only, never arbitrary pickled code
                try:
                    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as e:  # only the zipfile format (torch >= 1.6) can be memory-mapped
                    if "zip" not in str(e).lower():
                        raise
                    sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise ConversionError(f"{path}: cannot be read safely as a torch state dict ({e})") from None
            opened = {k: (lambda t=t: _torch_to_numpy(t)) for k, t in sd.items()}
        self._files[path] = opened
        return opened

    def source_of(self, name: str) -> str:
        return f"{self.where.get(name, self.source)}: "

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.where:
            raise KeyError(name)
        tensors = self._open(self.where[name])
        if name not in tensors:
            raise KeyError(name)
        return tensors[name]()


def import_hf(hf_dir: str, ckpt_dir: str, param_dtype: str = "float32") -> LlamaConfig:
    """HF LLaMA folder -> camel_jax checkpoint (model_config.json, Orbax params/, tokenizer/)."""
    cfg_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(cfg_path):
        raise ConversionError(f"{cfg_path}: missing; a Hugging Face model folder needs its config.json")
    cfg = config_from_hf(params_io.read_json(cfg_path, ConversionError), cfg_path, param_dtype=param_dtype)
    if os.path.exists(os.path.join(ckpt_dir, params_io.PARAMS_DIR)):
        raise FileExistsError(f"{ckpt_dir}/{params_io.PARAMS_DIR} already exists; choose a new checkpoint folder")
    weights = HFWeights(hf_dir)
    expected = set(hf_tensor_shapes(cfg)) | ({"lm_head.weight"} if cfg.tie_embeddings else set())
    unexpected = sorted(k for k in weights.where if k not in expected and not k.endswith(IGNORED_SUFFIXES))
    if unexpected:
        raise ConversionError(f"{weights.source}: tensors a plain LLaMA does not have: {unexpected[:8]}"
                              f"{' ...' if len(unexpected) > 8 else ''}")
    params = params_from_hf_state_dict(weights, cfg)
    del weights
    params_io.save_params(ckpt_dir, params, cfg)
    present = [n for n in TOKENIZER_FILES if os.path.isfile(os.path.join(hf_dir, n))]
    if present:
        os.makedirs(os.path.join(ckpt_dir, params_io.TOKENIZER_DIR), exist_ok=True)
        for n in present:
            shutil.copy2(os.path.join(hf_dir, n), os.path.join(ckpt_dir, params_io.TOKENIZER_DIR, n))
    return cfg


def parse_size(text: str) -> int:
    """'5GB' -> 5e9 bytes, '500MiB' -> 500*2**20 (Hugging Face's convention)."""
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    t = str(text).strip().upper()
    for u, mult in units.items():
        if t.endswith(u) and t[:-len(u)].strip().replace(".", "", 1).isdigit():
            return int(float(t[:-len(u)]) * mult)
    if t.isdigit():
        return int(t)
    raise ValueError(f"--max_shard_size {text!r}: expected a size such as 5GB, 500MB or 2GiB")


CHAT_TEMPLATES = ("auto", "tulu", "keep")


def resolve_chat_template(ckpt_dir: str, choice: str = "auto") -> str:
    """"tulu" for a training run's checkpoint under "auto" (camel_jax trains the TÜLU format), else "keep" (a
    converted checkpoint keeps the template it came with)."""
    if choice not in CHAT_TEMPLATES:
        raise ValueError(f"chat_template must be one of {CHAT_TEMPLATES}, got {choice!r}")
    if choice != "auto":
        return choice
    trained = any(os.path.isdir(os.path.join(ckpt_dir, d)) for d in ("checkpoints", params_io.STATE_ITEM))
    return "tulu" if trained else "keep"  # a run's output folder, or one of its step folders


def _write_chat_template(hf_dir: str, template: str) -> None:
    """chat_template.jinja (what transformers >= 4.43 reads), and no competing copy in tokenizer_config.json."""
    with open(os.path.join(hf_dir, "chat_template.jinja"), "w") as f:
        f.write(template)
    tc = os.path.join(hf_dir, "tokenizer_config.json")
    if os.path.isfile(tc):
        d = params_io.read_json(tc, ConversionError)
        if "chat_template" in d:
            del d["chat_template"]
            with open(tc, "w") as f:
                json.dump(d, f, indent=2)


def write_tokenizer(src: str | None, hf_dir: str, chat_template: str | None = None) -> list[str]:
    """Copy tokenizer files; a bare tokenizer.model gets a tokenizer_config.json naming LlamaTokenizer with BOS on,
    without which AutoTokenizer (transformers 5.x) silently yields different ids (reference tokenizer_notes.md).
    chat_template: a jinja template to install as the tokenizer's (replacing the copied one)."""
    written = []
    for n in TOKENIZER_FILES if src else ():
        if os.path.isfile(os.path.join(src, n)):
            shutil.copy2(os.path.join(src, n), os.path.join(hf_dir, n))
            written.append(n)
    if "tokenizer.model" in written and "tokenizer_config.json" not in written:
        with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                       "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}, f, indent=2)
        written.append("tokenizer_config.json")
    if chat_template is not None and written:
        _write_chat_template(hf_dir, chat_template)
        written = sorted(set(written) | {"chat_template.jinja"})
    return written


def export_hf(ckpt_dir: str, hf_dir: str, dtype: str | None = None, max_shard_size: str = "5GB",
              chat_template: str = "auto") -> list[str]:
    """camel_jax checkpoint (converted or training) -> HF folder loadable by LlamaForCausalLM and AutoTokenizer.
    dtype defaults to the stored parameter dtype, so an fp32 export reproduces every tensor bit for bit.
    chat_template (`resolve_chat_template`): "tulu" writes the TÜLU format (data/chat_format.chat_template) as the
    tokenizer's, so `apply_chat_template` gives the ids the model was trained on; "keep" copies the checkpoint's."""
    if os.path.isdir(hf_dir) and os.listdir(hf_dir):
        raise FileExistsError(f"{hf_dir} exists and is not empty; choose a new output folder")
    template = tulu_chat_template() if resolve_chat_template(ckpt_dir, chat_template) == "tulu" else None
    limit = parse_size(max_shard_size)
    params, cfg = params_io.load_params(ckpt_dir, dtype=dtype)  # cast per array while restoring
    dt = np_dtype(dtype or cfg.param_dtype)
    shapes = hf_tensor_shapes(cfg)
    shards: list[dict] = [{}]
    size = 0
    for name, *_ in _entries(cfg):
        nbytes = int(np.prod(shapes[name])) * dt.itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = (shapes[name], dt)
        size += nbytes
    os.makedirs(hf_dir, exist_ok=True)
    tensors = iter_hf_tensors(params, cfg, dtype or cfg.param_dtype)
    files = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    total = 0
    for fname, spec in zip(files, shards):
        total += write_safetensors(os.path.join(hf_dir, fname), (next(tensors) for _ in spec), spec)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": {n: f for f, spec in zip(files, shards) for n in spec}}
        with open(os.path.join(hf_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(hf_config_dict(cfg, str(dt)), f, indent=2)
    with open(os.path.join(hf_dir, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id},
                  f, indent=2)
    return files + write_tokenizer(params_io.tokenizer_dir(ckpt_dir), hf_dir, template)
