"""The one canonical table of LLaMA model presets, and the config dataclass every layer reads.

Every other module (model, partition rules, conversion, training, configs/) takes sizes from here, so a
preset is defined exactly once. Sizes of the published models follow Meta's params.json files and the
Hugging Face configs converted from them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

REMAT_POLICIES = ("none", "full", "save_dots")
# Training self-attention: "auto" = splash on TPU, cuDNN's fused attention on NVIDIA GPUs where it takes the model,
# block_sparse elsewhere (see `for_platform`); "dot" = plain masked attention over all keys; "splash_interpret" = the
# splash kernel run by Pallas' interpreter (any backend, slow); "cudnn_xla" = the cuDNN call's arguments through
# JAX's XLA implementation (any backend).
ATTENTION_IMPLS = ("auto", "block_sparse", "splash", "splash_interpret", "cudnn", "cudnn_xla", "dot")


OLD_TPUS = ("tpu v2", "tpu v3")  # device_kind prefixes whose Mosaic cannot compile splash's bf16 matmuls (E2001)


def platform_of(device) -> str:
    """A JAX device's platform as `for_platform` takes it: jax's name ("tpu", "gpu", "cpu"), but "rocm" for an AMD
    GPU, which has no cuDNN (both report "gpu"), and "tpu_v2v3" for TPU v2/v3, where the splash kernel does not
    compile ("Unsupported matmul RHS type vector<128x128xbf16>", found by compiling for a v3 topology)."""
    p = device.platform
    if p == "gpu" and "rocm" in str(getattr(device.client, "platform_version", "")).lower():
        return "rocm"
    if p == "tpu" and str(getattr(device, "device_kind", "")).lower().startswith(OLD_TPUS):
        return "tpu_v2v3"
    return p


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int | None = None  # None: multi-head attention (= num_heads)
    head_dim: int | None = None  # None: hidden_size // num_heads
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    # Embedding rows / head columns are stored padded to a multiple of this (`padded_vocab`), so any mp up to it
    # divides the table: the TÜLU checkpoints' 32,001 tokens become 32,128 rows. vocab_size stays the real size;
    # padded ids are never predicted, sampled or trained (model/vocab.py), and export trims them off.
    vocab_multiple: int = 128
    # Numerics and memory; not part of the architecture, so conversion ignores them.
    param_dtype: str = "float32"
    dtype: str = "bfloat16"  # compute dtype
    remat: str = "none"
    # Layers per iteration of the layer scan: 1 keeps compile time flat in depth (the TPU default); num_layers
    # unrolls the whole stack, which XLA's CPU backend runs ~7% faster (bench-58m) for a longer compile.
    scan_unroll: int = 1
    attention: str = "auto"  # ATTENTION_IMPLS: training, scoring and prefills; decode steps attend over the cache

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def padded_vocab(self) -> int:
        """Rows of the embedding table and columns of the output head as stored: vocab_size rounded up."""
        m = max(1, int(self.vocab_multiple))
        return -(-int(self.vocab_size) // m) * m

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def replace(self, **kw: Any) -> "LlamaConfig":
        return dataclasses.replace(self, **kw)

    def for_platform(self, platform: str) -> "LlamaConfig":
        """`attention` made concrete for the backend that will run it (`platform_of`: "tpu", "gpu", "rocm",
        "cpu", "tpu_v2v3"): "auto" is splash on TPU v4 and later (block_sparse on v2/v3), cuDNN on an NVIDIA GPU when it takes the compute dtype and head dim
        (`cudnn.supported`: bf16/fp16, head dim a multiple of 8 up to 128), and block_sparse otherwise; splash
        asked for off TPU runs in the interpreter, cuDNN off an NVIDIA GPU through XLA. The train step resolves it
        from its mesh's devices (so compiling for a TPU topology on a CPU host picks the TPU kernel); the model
        resolves a remaining "auto" from the default backend (`llama.default_platform`)."""
        att = self.attention
        if att == "auto":
            from camel_jax.model.cudnn import supported

            if platform == "tpu":
                att = "splash"
            elif platform == "gpu" and supported(self.dtype, self.dim_per_head):
                att = "cudnn"
            else:
                att = "block_sparse"
        if att == "splash" and not platform.startswith("tpu"):
            att = "splash_interpret"
        if att == "cudnn" and platform != "gpu":
            att = "cudnn_xla"
        return self if att == self.attention else self.replace(attention=att)

    def validate(self) -> "LlamaConfig":
        """Fail with a clear message before anything is compiled."""
        errs = []
        for f in ("vocab_size", "vocab_multiple", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                  "max_seq_len"):
            if int(getattr(self, f)) <= 0:
                errs.append(f"{f} must be positive, got {getattr(self, f)}")
        if self.head_dim is None and self.num_heads > 0 and self.hidden_size % self.num_heads:
            errs.append(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads > 0 and self.kv_heads > 0 and self.num_heads % self.kv_heads:
            errs.append(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.kv_heads}")
        if self.num_heads > 0 and self.dim_per_head % 2:
            errs.append(f"head_dim {self.dim_per_head} must be even for rotary embeddings")
        if not 1 <= int(self.scan_unroll) <= max(1, int(self.num_layers)):
            errs.append(f"scan_unroll must be in [1, num_layers={self.num_layers}], got {self.scan_unroll}")
        if self.remat not in REMAT_POLICIES:
            errs.append(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if self.attention not in ATTENTION_IMPLS:
            errs.append(f"attention must be one of {ATTENTION_IMPLS}, got {self.attention!r}")
        for f in ("param_dtype", "dtype"):
            if getattr(self, f) not in ("float32", "bfloat16", "float16"):
                errs.append(f"{f} must be float32, bfloat16 or float16, got {getattr(self, f)!r}")
        if errs:
            raise ValueError("invalid model config: " + "; ".join(errs))
        return self

    def num_params(self) -> int:
        """Exact parameter count from the shapes as stored (padded vocabulary; no allocation)."""
        d, f, v, hd = self.hidden_size, self.intermediate_size, self.padded_vocab, self.dim_per_head
        attn = d * self.num_heads * hd * 2 + d * self.kv_heads * hd * 2
        per_layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_embeddings else d * v
        return v * d + self.num_layers * per_layer + d + head

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (6N plus causal attention), for MFU."""
        n = self.num_params() - self.padded_vocab * self.hidden_size  # embedding lookup is not a matmul
        attn = 6 * self.num_layers * self.num_heads * self.dim_per_head * seq_len  # 12*L*H*hd*T/2 (causal)
        return 6.0 * n + attn


def _llama(d, f, layers, heads, kv=None, vocab=32000, seq=2048, theta=10000.0, eps=1e-6) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=f, num_layers=layers, num_heads=heads,
                       num_kv_heads=kv, max_seq_len=seq, rope_theta=theta, rms_norm_eps=eps)


PRESETS: dict[str, LlamaConfig] = {
    # LLaMA-1 (Touvron et al. 2023); "30b" is the model Meta released as 33B.
    "llama-7b": _llama(4096, 11008, 32, 32),
    "llama-13b": _llama(5120, 13824, 40, 40),
    "llama-30b": _llama(6656, 17920, 60, 52),
    "llama-65b": _llama(8192, 22016, 80, 64),
    # Llama 2
    "llama2-7b": _llama(4096, 11008, 32, 32, seq=4096, eps=1e-5),
    "llama2-13b": _llama(5120, 13824, 40, 40, seq=4096, eps=1e-5),
    "llama2-70b": _llama(8192, 28672, 80, 64, kv=8, seq=4096, eps=1e-5),
    # Small presets for tests and CPU benchmarks.
    "bench-58m": _llama(512, 1376, 8, 8, seq=2048),
    "tiny-mha": _llama(64, 176, 2, 4, vocab=256, seq=128),
    "tiny-gqa": _llama(64, 176, 2, 4, kv=2, vocab=256, seq=128),
    # llama2.c stories260K: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512.
    "stories260k": _llama(64, 172, 5, 8, kv=4, vocab=512, seq=512, eps=1e-5).replace(tie_embeddings=True),
}


def get_preset(name: str, **overrides: Any) -> LlamaConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides).validate()
