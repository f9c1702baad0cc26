"""The paper's optimizer: global-norm clipping, then AdamW on a linear warmup / linear decay schedule.

Matches open-instruct's `finetune.py` (torch AdamW + `get_scheduler("linear")` + DeepSpeed clipping at 1.0):

* `lr_schedule` is Hugging Face's `get_linear_schedule_with_warmup` exactly, with
  ``warmup = int(warmup_ratio * total_steps)`` (open-instruct's `int(T * 0.03)`, a floor):
  ``lr(s) = peak * s / max(1, warmup)`` for ``s < warmup``, else ``peak * max(0, (total - s) / max(1, total - warmup))``.
  The update with 0-based index ``s`` uses ``lr(s)``: the FIRST update uses ``lr(0)``, which is 0 whenever
  warmup > 0 (as in PyTorch, where the scheduler is stepped after the optimizer). The last update
  (``s = total - 1``) uses ``peak / (total - warmup)``.
* AdamW is torch's: bias-corrected moments, ``p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``. With
  weight decay > 0 every parameter decays: open-instruct's no-decay names (``bias``, ``layer_norm.weight``)
  match no LLaMA parameter, so nothing was exempt there either. optax forms the bias correction ``1 - b2**t`` in
  float32 (torch in float64), which moves early updates by ~1e-5 relative; immaterial next to bf16 compute.
* Clipping is optax's global-norm clip (scale ``clip / norm`` when ``norm >= clip``); DeepSpeed divides by
  ``norm + 1e-6``, a relative difference of 1e-6 on clipped steps only.

The whole chain is wrapped in `optax.inject_hyperparams`, so the learning rate each update used is kept in the
optimizer state (`current_lr`) and the train step can report it without knowing the schedule.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Number of warmup steps, open-instruct's ``int(total_steps * warmup_ratio)``."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    return int(total_steps * warmup_ratio)


def lr_schedule(total_steps: int, warmup_ratio: float, peak_lr: float) -> Callable[[Any], jax.Array]:
    """The HF/open-instruct linear warmup + linear decay schedule as a function of the 0-based update index."""
    warm = warmup_steps(total_steps, warmup_ratio)
    total = int(total_steps)

    def schedule(step):
        s = jnp.asarray(step, jnp.float32)
        up = s / max(1, warm)
        down = jnp.maximum(0.0, (total - s) / max(1, total - warm))
        return jnp.asarray(peak_lr, jnp.float32) * jnp.where(s < warm, up, down)

    return schedule


def make_optimizer(peak_lr: float = 2e-5, total_steps: int = 1, warmup_ratio: float = 0.03,
                   weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   clip_norm: float | None = 1.0) -> optax.GradientTransformation:
    """clip_by_global_norm(clip_norm) then AdamW(lr_schedule(...)); defaults are the paper's recipe.
    `clip_norm=None` (or <= 0) disables clipping."""
    if peak_lr < 0:
        raise ValueError(f"peak_lr must be >= 0, got {peak_lr}")
    schedule = lr_schedule(total_steps, warmup_ratio, peak_lr)

    def chain(learning_rate):
        adamw = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
        if clip_norm is None or clip_norm <= 0:
            return optax.chain(optax.identity(), adamw)  # same state structure with or without clipping
        return optax.chain(optax.clip_by_global_norm(clip_norm), adamw)

    return optax.inject_hyperparams(chain)(learning_rate=schedule)


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate the last update used (the schedule at the update's index), read from the state
    `make_optimizer` keeps. Before any update it is the schedule at 0."""
    hp = getattr(opt_state, "hyperparams", None)
    if hp is None or "learning_rate" not in hp:
        raise ValueError("optimizer state carries no learning_rate hyperparameter; build the optimizer with "
                         "camel_jax.train.optimizer.make_optimizer (optax.inject_hyperparams)")
    return jnp.asarray(hp["learning_rate"], jnp.float32)
