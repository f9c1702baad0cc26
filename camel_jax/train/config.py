"""The training config: one ml_collections schema, the paper's recipe as its values, and checks that name the field.

Every run is described by a ConfigDict built here (config files under configs/ only pick variants of it), so any
field can be overridden on the command line as `--config.<path>=<value>` and the same schema is saved with each
checkpoint. `validate` runs before anything is traced: a batch that does not split over the mesh or an unknown
dataset costs a second, not a compile.

Recipe (open-instruct finetune.py, ../shared/reference/open_instruct.md §3.4): AdamW(0.9, 0.999, 1e-8), weight
decay 0, lr 2e-5, linear warmup over 3% of the steps then linear decay to 0, 2 epochs, global batch 128, global-norm
clip 1.0, bf16 compute with fp32 master weights, max length 2048, one example per row (no packing).
"""
from __future__ import annotations

import math
import os
from typing import Any

from ml_collections import ConfigDict

from camel_jax.data import mixtures as _mixtures
from camel_jax.model.config import ATTENTION_IMPLS, PRESETS, REMAT_POLICIES
from camel_jax.train.loss import REDUCTIONS as LOSS_REDUCTIONS

DATASETS = tuple(_mixtures.DATASETS)  # the 12 datasets, in the data module's table order
MIXTURES = tuple(_mixtures.MIXTURES)  # tulu_human_mix, tulu_human_gpt_mix
SAMPLE_MIXTURE = _mixtures.SAMPLE_MIXTURE  # the bundled TÜLU-mix sample (camel_jax/assets/tulu_mix_sample.jsonl)
DTYPES = ("float32", "bfloat16", "float16")
# init_from value meaning "the bundled llama2.c stories260K, imported in memory".
BUILTIN_STORIES = "builtin:stories260k"

# Per model size: what differs between the paper's 7B…65B runs. lr and max length for 30B/65B are as the paper's
# appendix is recalled (1e-5, 1024; open_instruct.md §3.4 marks this [recalled], the repo's scripts only show 7B/13B
# at 2e-5/2048); grad_accum/remat are memory defaults for a v4/v5p slice, not part of the recipe (the global batch is).
SIZES: dict[str, dict[str, Any]] = {
    "llama-7b": dict(lr=2e-5, max_seq_length=2048, grad_accum=4, remat="save_dots"),
    "llama-13b": dict(lr=2e-5, max_seq_length=2048, grad_accum=8, remat="save_dots"),
    "llama-30b": dict(lr=1e-5, max_seq_length=1024, grad_accum=8, remat="full"),
    "llama-65b": dict(lr=1e-5, max_seq_length=1024, grad_accum=16, remat="full"),
}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field (config.<path>) or flag."""


def base_config() -> ConfigDict:
    """The paper's recipe for LLaMA-7B on the TÜLU (human+GPT) mixture; every field a run may read."""
    c = ConfigDict()
    c.model = "llama-7b"  # a preset name from camel_jax.model.config.PRESETS
    c.init_from = ""  # checkpoint dir from `convert import-hf`, or BUILTIN_STORIES; empty: random init (tests/bench)
    c.data = ConfigDict()
    c.data.mixture = "tulu_human_gpt_mix"  # a dataset name, a mixture name, SAMPLE_MIXTURE or a .jsonl path
    c.data.data_dir = ""  # prepared <dataset>.jsonl files; empty: $CAMEL_JAX_DATA_DIR
    c.data.max_seq_length = 2048
    c.data.packing = False  # the paper pads one example per row
    c.data.mixture_rates = False  # False: concatenation as in the paper; True: sample by rate
    c.data.tokenizer = ""  # empty: the tokenizer that travels with init_from
    c.data.holdout = 0  # examples held out of training (the default run generates on them before/after)
    c.train = ConfigDict()
    c.train.batch_size = 128  # global, in rows (examples when not packing)
    c.train.grad_accum = 4
    c.train.epochs = 2
    c.train.max_steps = 0  # > 0 overrides epochs
    c.train.lr = 2e-5
    c.train.warmup_ratio = 0.03
    c.train.weight_decay = 0.0
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.eps = 1e-8
    c.train.max_grad_norm = 1.0
    c.train.loss_reduction = "token"
    c.train.loss_chunk = 512  # slots per row of each fused lm_head+loss chunk (head_loss.py); 0: full logits
    c.train.micro_mean_rows = 0  # micro_mean only: rows per averaged group (open-instruct: per-GPU batch); 0 = micro-batch
    c.train.seed = 42
    c.train.checkpoint_every = 100
    c.train.keep_checkpoints = 3
    c.train.async_checkpoint = True
    c.train.remat = "save_dots"
    c.train.scan_unroll = 1  # layers per layer-scan iteration; = num_layers unrolls (faster on CPU, slower compile)
    c.train.attention = "auto"  # splash on TPU, cuDNN on NVIDIA GPUs, block_sparse elsewhere; or any ATTENTION_IMPLS
    c.train.dtype = "bfloat16"  # compute
    c.train.param_dtype = "float32"  # master weights
    c.train.print_every = 0  # print a metrics line every N steps (0: about 20 lines per run); JSONL gets every step
    c.train.export_hf_at_end = ""  # a directory: write a Hugging Face checkpoint there at the end
    c.train.stop_after = 0  # end this invocation after N steps, checkpointed (time-limited slots); rerun resumes
    c.train.nan_at_step = -1  # test hook: make the loss of this step NaN (checks the NaN stop); -1: off
    c.sample = ConfigDict()
    c.sample.enabled = True  # greedy answers before and after training (held-out examples and sample.prompts)
    c.sample.prompts = ()  # instructions to answer greedily before and after training (besides held-out ones)
    c.sample.max_new_tokens = 64
    return c


def paper_config(size: str, mixture: str) -> ConfigDict:
    """One of the paper's runs: `size` in SIZES, `mixture` a dataset or mixture name."""
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; the paper's sizes are {', '.join(SIZES)}")
    if mixture not in DATASETS + MIXTURES:
        raise ConfigError(f"unknown dataset/mixture {mixture!r}; known: {', '.join(DATASETS + MIXTURES)}")
    c = base_config()
    s = SIZES[size]
    c.model = size
    c.data.mixture = mixture
    c.data.max_seq_length = s["max_seq_length"]
    c.train.lr = s["lr"]
    c.train.grad_accum = s["grad_accum"]
    c.train.remat = s["remat"]
    return c


def default_config() -> ConfigDict:
    """The embedded default: real stories260K tuned on the bundled TÜLU-mix sample, minutes on 2 CPU cores."""
    c = base_config()
    c.model = "stories260k"
    c.init_from = BUILTIN_STORIES
    c.data.mixture = SAMPLE_MIXTURE
    c.data.max_seq_length = 512
    c.data.packing = True
    c.data.holdout = 3
    c.train.batch_size = 8  # rows of 512 packed tokens (14 steps per epoch); splits over 1, 2, 4 or 8 devices
    c.train.grad_accum = 1
    c.train.epochs = 2
    c.train.lr = 2e-3  # a 260K-parameter model needs a far larger step than LLaMA's 2e-5
    c.train.checkpoint_every = 10
    c.train.keep_checkpoints = 2
    c.train.remat = "none"
    c.train.dtype = "float32"
    c.sample.prompts = ("Write a short story about a cat who finds a hat.",)
    c.sample.max_new_tokens = 48
    return c


def num_steps(cfg: ConfigDict, steps_per_epoch: int) -> int:
    """Optimizer steps of the run: train.max_steps when > 0, else epochs × steps per epoch."""
    if cfg.train.max_steps > 0:
        return int(cfg.train.max_steps)
    return int(math.ceil(cfg.train.epochs * steps_per_epoch))


def _fail(field: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config.{field}={value!r}: {why}")


def validate(cfg: ConfigDict, mesh_sizes: dict[str, int] | None = None) -> ConfigDict:
    """Raise ConfigError naming the first bad field; mesh_sizes ({'dp','fsdp','mp'}) adds the batch-split checks."""
    if cfg.model not in PRESETS:
        raise _fail("model", cfg.model, f"unknown preset; known: {', '.join(sorted(PRESETS))}")
    d, t = cfg.data, cfg.train
    mix = d.mixture
    if not (mix in _mixtures.known_names() or str(mix).endswith(".jsonl")):
        raise _fail("data.mixture", mix, f"expected one of {', '.join(DATASETS + MIXTURES + (SAMPLE_MIXTURE,))} "
                                         f"(or tulu_<dataset>), or a path ending in .jsonl")
    if str(mix).endswith(".jsonl") and not os.path.isfile(mix):
        raise _fail("data.mixture", mix, "no such file")
    if d.max_seq_length < 2:
        raise _fail("data.max_seq_length", d.max_seq_length, "must be at least 2")
    # Against the preset for a random init; spec.resolve_run checks the architecture an init_from checkpoint holds.
    if not cfg.init_from and d.max_seq_length > PRESETS[cfg.model].max_seq_len:
        raise _fail("data.max_seq_length", d.max_seq_length,
                    f"longer than model {cfg.model}'s max_seq_len {PRESETS[cfg.model].max_seq_len}")
    if d.holdout < 0:
        raise _fail("data.holdout", d.holdout, "must be >= 0")
    if t.print_every < 0:
        raise _fail("train.print_every", t.print_every, "must be >= 0")
    for name in ("batch_size", "grad_accum", "keep_checkpoints"):
        if getattr(t, name) < 1:
            raise _fail(f"train.{name}", getattr(t, name), "must be >= 1")
    if t.batch_size % t.grad_accum:
        raise _fail("train.batch_size", t.batch_size, f"not divisible by train.grad_accum={t.grad_accum}")
    micro = t.batch_size // t.grad_accum
    if mesh_sizes is not None:
        shards = mesh_sizes["dp"] * mesh_sizes["fsdp"]
        if micro % shards:
            raise _fail("train.batch_size", t.batch_size,
                        f"micro-batch batch_size/grad_accum = {micro} rows is not divisible by dp×fsdp = "
                        f"{mesh_sizes['dp']}×{mesh_sizes['fsdp']} = {shards} (change the batch, grad_accum or --mesh)")
    if t.max_steps < 0:
        raise _fail("train.max_steps", t.max_steps, "must be >= 0 (0: use train.epochs)")
    if t.max_steps == 0 and not t.epochs > 0:
        raise _fail("train.epochs", t.epochs, "must be > 0 when train.max_steps is 0")
    if not t.lr > 0:
        raise _fail("train.lr", t.lr, "must be > 0")
    if not 0 <= t.warmup_ratio < 1:
        raise _fail("train.warmup_ratio", t.warmup_ratio, "must be in [0, 1)")
    if t.stop_after < 0:
        raise _fail("train.stop_after", t.stop_after, "must be >= 0 (0: run to the end)")
    if t.checkpoint_every < 0:
        raise _fail("train.checkpoint_every", t.checkpoint_every, "must be >= 0 (0: only at the end)")
    if t.loss_reduction not in LOSS_REDUCTIONS:
        raise _fail("train.loss_reduction", t.loss_reduction, f"expected one of {LOSS_REDUCTIONS}")
    if not isinstance(t.loss_chunk, int) or t.loss_chunk < 0:
        raise _fail("train.loss_chunk", t.loss_chunk, "must be an int >= 0 (0: full logits, no fused loss)")
    if t.remat not in REMAT_POLICIES:
        raise _fail("train.remat", t.remat, f"expected one of {REMAT_POLICIES}")
    if t.attention not in ATTENTION_IMPLS:
        raise _fail("train.attention", t.attention, f"expected one of {ATTENTION_IMPLS}")
    if not cfg.init_from and not 1 <= t.scan_unroll <= PRESETS[cfg.model].num_layers:
        raise _fail("train.scan_unroll", t.scan_unroll,
                    f"must be in [1, {PRESETS[cfg.model].num_layers}] (the layers of {cfg.model})")
    for name in ("dtype", "param_dtype"):
        if getattr(t, name) not in DTYPES:
            raise _fail(f"train.{name}", getattr(t, name), f"expected one of {DTYPES}")
    if not t.max_grad_norm > 0:
        raise _fail("train.max_grad_norm", t.max_grad_norm, "must be > 0")
    if cfg.sample.max_new_tokens < 1:
        raise _fail("sample.max_new_tokens", cfg.sample.max_new_tokens, "must be >= 1")
    return cfg


def to_dict(cfg: ConfigDict) -> dict:
    """Plain JSON-able dict (tuples become lists), saved into every checkpoint's meta."""
    def plain(v):
        if isinstance(v, ConfigDict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


VARIANTS = ("default", "base", "<size>,<data>")


def get_config(variant: str = "default") -> ConfigDict:
    """Makes this file itself a config file (the CLI's default `--config`): 'default', 'base' or '<size>,<data>'."""
    if variant == "default":
        return default_config()
    if variant == "base":
        return base_config()
    size, comma, mixture = variant.partition(",")
    if not comma:
        raise ConfigError(f"unknown variant {variant!r}; expected default, base or <size>,<data> with <size> in "
                          f"{', '.join(SIZES)}")
    return paper_config(size.strip(), mixture.strip())


# The fields most runs set, for `python -m camel_jax.train --help` (every field: base_config above).
MAIN_FIELDS = {
    "model": "preset name (random init only; with init_from the checkpoint's architecture is trained)",
    "init_from": f"checkpoint dir from `convert import-hf`/`import-llama2c`, or {BUILTIN_STORIES}",
    "data.mixture": "dataset, mixture (tulu_human_mix, tulu_human_gpt_mix), tulu_mix_sample or a .jsonl path",
    "data.data_dir": "folder of prepared <dataset>.jsonl files (default $CAMEL_JAX_DATA_DIR)",
    "data.max_seq_length": "tokens per row",
    "data.packing": "several examples per row (the paper: False)",
    "data.tokenizer": "tokenizer path (default: the one next to init_from)",
    "train.batch_size": "global batch in rows",
    "train.grad_accum": "micro-batches per optimizer step",
    "train.epochs": "epochs (train.max_steps > 0 overrides)",
    "train.max_steps": "optimizer steps, 0: use epochs",
    "train.lr": "peak learning rate (linear warmup train.warmup_ratio, linear decay)",
    "train.loss_reduction": "token (global token mean) or micro_mean (open-instruct's)",
    "train.remat": "none, full or save_dots",
    "train.dtype": "compute dtype (train.param_dtype: master weights)",
    "train.checkpoint_every": "steps between checkpoints (0: only at the end)",
    "train.export_hf_at_end": "write a Hugging Face checkpoint here at the end",
    "sample.enabled": "greedy answers before and after training",
}


def help_text() -> str:
    """The config part of `train --help`: the config files and their variants, and the main fields."""
    defaults = base_config()

    def value(path):
        v = defaults
        for k in path.split("."):
            v = v[k]
        return v

    lines = ["Config files and variants (--config=FILE[:VARIANT]):",
             "  camel_jax/train/config.py (the default): default (stories260K on the bundled sample), base (the "
             "paper's 7B recipe), <size>,<data>",
             "  configs/tulu.py:<size>,<data>  the paper's runs; configs/base.py; configs/default.py",
             f"  <size>: {', '.join(SIZES)}",
             f"  <data>: {', '.join(DATASETS + MIXTURES)}",
             "Main config fields (--config.<field>=VALUE; base recipe value in brackets; all fields: "
             "camel_jax/train/config.py):"]
    lines += [f"  {k} [{value(k)!r}]: {why}" for k, why in MAIN_FIELDS.items()]
    return "\n".join(lines)
