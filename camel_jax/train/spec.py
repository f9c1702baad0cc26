"""One resolution of a run: the model a config trains, with its numerics, and the shapes of its batches.

`resolve_run(cfg)` is the single place that decides which architecture a run trains (the `init_from` checkpoint's
own `model_config.json`, the bundled stories260K's llama2.c header, or the `config.model` preset for a random
init), applies the run's numerics (dtype, param dtype, remat, scan unroll, attention) and fixes the batch the loop
feeds: `[grad_accum, micro_rows, seq_len]` arrays under `BATCH_KEYS`. The training set-up and compile-only
lowering (`lower_run`) both start from it, so a planned program is the program the loop runs. It reads no weights
and no data: a config and, at most, a checkpoint's small config file.
"""
from __future__ import annotations

import dataclasses
import os

from ml_collections import ConfigDict

from camel_jax import storage
from camel_jax.model.config import PRESETS, LlamaConfig, get_preset
from camel_jax.train import config as C
from camel_jax.train.step import BATCH_KEYS

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
STORIES_BIN = os.path.join(ASSETS, "stories260k", "stories260K.bin")
_ARCH_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                "head_dim", "tie_embeddings")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    model: LlamaConfig  # the architecture trained, with the run's numerics
    model_name: str  # a preset name when the architecture is one, else a description of the checkpoint's
    source: str  # "checkpoint", "builtin" or "random"
    grad_accum: int
    micro_rows: int  # global rows per micro-batch (train.batch_size / train.grad_accum)
    seq_len: int  # slots per row (data.max_seq_length)
    packed: bool  # several examples per row (data.packing); the batch keys are the same either way
    batch_keys: tuple[str, ...] = BATCH_KEYS

    @property
    def numerics(self) -> dict:
        m = self.model
        return dict(dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat, scan_unroll=m.scan_unroll,
                    attention=m.attention)


def _preset_named(arch: LlamaConfig) -> str | None:
    key = tuple(getattr(arch, f) for f in _ARCH_FIELDS)
    return next((n for n, p in PRESETS.items() if tuple(getattr(p, f) for f in _ARCH_FIELDS) == key), None)


def _architecture(cfg: ConfigDict) -> tuple[LlamaConfig, str]:
    src = cfg.init_from
    if src == C.BUILTIN_STORIES:
        from camel_jax.convert.llama2c import read_header

        return read_header(STORIES_BIN)[0], "builtin"
    if src:
        from camel_jax.params_io import load_model_config

        try:
            return load_model_config(src), "checkpoint"
        except (ValueError, TypeError, KeyError, OSError) as e:
            raise C.ConfigError(f"--init_from={src}: {e.args[0] if isinstance(e, KeyError) else e}") from None
    return get_preset(cfg.model), "random"


def resolve_run(cfg: ConfigDict) -> RunSpec:
    """The RunSpec of a (validated) config; ConfigError naming the field when the model cannot take the config."""
    t = cfg.train
    arch, source = _architecture(cfg)
    name = _preset_named(arch) if source != "random" else cfg.model
    if name is None:
        name = f"{storage.basename(cfg.init_from)} from --init_from (not config.model={cfg.model})"
    elif source != "random" and name != cfg.model:
        name = f"{name} from --init_from (not config.model={cfg.model})"
    where = "the --init_from checkpoint" if source != "random" else f"model {cfg.model}"
    if cfg.data.max_seq_length > arch.max_seq_len:
        raise C.ConfigError(f"config.data.max_seq_length={cfg.data.max_seq_length}: longer than {where}'s "
                            f"max_seq_len {arch.max_seq_len}")
    if not 1 <= t.scan_unroll <= arch.num_layers:
        raise C.ConfigError(f"config.train.scan_unroll={t.scan_unroll}: must be in [1, {arch.num_layers}] (the "
                            f"layers of {where})")
    model = arch.replace(dtype=t.dtype, param_dtype=t.param_dtype, remat=t.remat, scan_unroll=t.scan_unroll,
                         attention=t.attention).validate()
    return RunSpec(model, name, source, int(t.grad_accum), int(t.batch_size // t.grad_accum),
                   int(cfg.data.max_seq_length), bool(cfg.data.packing))


def run_optimizer(cfg: ConfigDict, total_steps: int | None = None):
    """The run's optimizer (its schedule length, default train.max_steps or 1000, does not change the program)."""
    from camel_jax.train.optimizer import make_optimizer

    t = cfg.train
    total = total_steps or t.max_steps or 1000
    return make_optimizer(t.lr, total, t.warmup_ratio, t.weight_decay, t.b1, t.b2, t.eps, t.max_grad_norm)


def lower_run(spec: RunSpec, cfg: ConfigDict, mesh, total_steps: int | None = None):
    """The run's train step lowered on `mesh` for abstract inputs (compile-only planning: `.compile()` it, e.g. on
    a TPU topology), with `run_optimizer(cfg, total_steps)`."""
    from camel_jax.train.step import lower_train_step

    t = cfg.train
    return lower_train_step(spec.model, run_optimizer(cfg, total_steps), mesh, spec.grad_accum, spec.micro_rows,
                            spec.seq_len, t.loss_reduction, t.micro_mean_rows or None, loss_chunk=t.loss_chunk)
