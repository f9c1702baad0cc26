"""The jitted train step: gradient accumulation over micro-batches, clipping + AdamW, metrics.

``train_step = make_train_step(cfg, optimizer, mesh, grad_accum, loss_reduction)``;
``state, metrics = train_step(state, batch)``.

* ``batch``: the data pipeline's dict (``inputs``, ``targets`` int32, ``loss_mask`` float32, and optionally
  ``segment_ids``, ``positions`` int32), each shaped ``[grad_accum, micro_rows, T]``: one optimizer step's global
  batch split into ``grad_accum`` micro-batches (``micro_rows`` a multiple of dp×fsdp; rows are sharded as the
  logical "batch" on axis 1, `partition.batch_sharding`). Keys beyond these are ignored.
* Accumulation: `lax.scan` over micro-batches, each adding ``grad(sum(nll * weights))`` in fp32 into an accumulator
  kept in the parameters' sharding; one multiplication by the reduction's scale at the end (see `loss.py`), so
  ``token`` is exactly the global token mean whatever the split. One micro-batch: no scan, no accumulator. The
  gradient is taken w.r.t. the compute-dtype copy of the parameters (`compute_params`): bitwise the same, half the
  bytes per micro-batch in bf16.
* ``metrics`` (fp32 scalars, replicated): ``loss`` (this reduction, before the update), ``grad_norm`` (global norm
  before clipping), ``lr`` (the learning rate this update used), ``n_tokens`` (trained tokens in the batch).
* The state is donated; the same inputs give bitwise the same outputs (no randomness; fixed reduction order).

`lower_train_step` traces the same function on ShapeDtypeStructs (nothing allocated) for compile-only planning:
``lower_train_step(cfg, optimizer, mesh, grad_accum, micro_rows, seq_len).compile()`` on a TPU topology mesh;
from a training config, `spec.lower_run(resolve_run(cfg), cfg, mesh)` lowers exactly the program the loop runs.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from camel_jax.model.llama import Llama, head_kernel
from camel_jax.model.config import LlamaConfig, platform_of
from camel_jax.data.packing import BATCH_KEYS
from camel_jax.model import partition
from camel_jax.train.head_loss import head_nll_sum
from camel_jax.train.loss import check_reduction, loss_weights, token_nll
from camel_jax.train.optimizer import current_lr
from camel_jax.train.state import abstract_train_state, state_shardings, with_shardings

DEFAULT_LOSS_CHUNK = 512
OPTIONAL_KEYS = ("segment_ids", "positions")  # absent: one unpadded example per row (tests, benchmarks)
REQUIRED_KEYS = tuple(k for k in BATCH_KEYS if k not in OPTIONAL_KEYS)
_DTYPES = {"inputs": jnp.int32, "targets": jnp.int32, "loss_mask": jnp.float32, "segment_ids": jnp.int32,
           "positions": jnp.int32}


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """[grad_accum, micro_rows, T] with rows split as "batch" under the training rules (over dp×fsdp)."""
    return partition.batch_sharding(mesh, 3, partition.TRAIN_RULES)


def _data_shards(mesh: jax.sharding.Mesh) -> int:
    return partition.data_shards(mesh, partition.TRAIN_RULES)


def _check_shape(shape: tuple, grad_accum: int, mesh: jax.sharding.Mesh, what: str) -> None:
    if len(shape) != 3:
        raise ValueError(f"train batch {what} must be [grad_accum, micro_rows, T], got shape {tuple(shape)}")
    if shape[0] != grad_accum:
        raise ValueError(f"train batch {what} has {shape[0]} micro-batches on axis 0 but train.grad_accum is "
                         f"{grad_accum}")
    if shape[1] % _data_shards(mesh):
        raise ValueError(f"train batch {what}: micro-batch of {shape[1]} rows is not divisible by dp×fsdp = "
                         f"{_data_shards(mesh)} (global batch / grad_accum must split over the data axes)")


def _select(batch: dict, grad_accum: int, mesh: jax.sharding.Mesh) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in batch]
    if missing:
        raise KeyError(f"train batch lacks {missing}; it has {sorted(batch)}")
    out = {k: batch[k] for k in REQUIRED_KEYS + OPTIONAL_KEYS if k in batch}
    shape = tuple(out["inputs"].shape)
    for k, v in out.items():
        _check_shape(tuple(v.shape), grad_accum, mesh, k)
        if tuple(v.shape) != shape:
            raise ValueError(f"train batch {k} has shape {tuple(v.shape)}, inputs has {shape}")
    return out


def compute_params(params: dict, cfg: LlamaConfig, shardings: Any) -> dict:
    """The parameters the model casts to the compute dtype before any use, cast here once in their own sharding
    (the embedding, looked up before its cast and maybe tied to the head, stays as it is).

    Why: d loss/d p for p used only as cast(p) is exactly convert(d loss/d cast(p)), so differentiating with
    respect to the cast copy gives bitwise the same update while each micro-batch's gradient tree, and every FSDP
    gather, is in the compute dtype (half the bytes of fp32 for bf16)."""
    dt = jnp.dtype(cfg.dtype)

    def cast(path, p, s):
        if p.dtype == dt or not jnp.issubdtype(p.dtype, jnp.floating) or partition.path_str(path).startswith("embed"):
            return p
        return jax.lax.with_sharding_constraint(p.astype(dt), s)

    return jax.tree_util.tree_map_with_path(cast, params, shardings)


def _step(state: dict, batch: dict, *, model: Llama, optimizer: optax.GradientTransformation, reduction: str,
          micro_mean_rows: int | None, grad_shardings: Any, loss_chunk: int, data_shards: int,
          lean: bool = True) -> tuple[dict, dict]:
    params = state["params"]
    weights, scale = loss_weights(batch["loss_mask"], reduction, micro_mean_rows)

    def micro_loss(p, mb, w):
        out, _ = model.apply({"params": p}, mb["inputs"], positions=mb.get("positions"),
                             segment_ids=mb.get("segment_ids"), head=not loss_chunk)
        if loss_chunk:  # fused projection + loss over chunks holding trained tokens (head_loss.py)
            kernel = head_kernel(p, model.config).astype(jnp.dtype(model.config.dtype))
            return head_nll_sum(out, kernel, mb["targets"], w, loss_chunk, data_shards, model.config.vocab_size,
                                lean)
        return jnp.sum(token_nll(out, mb["targets"]) * w)  # padded vocabulary columns masked in the model

    grad_fn = jax.value_and_grad(micro_loss)
    # lean=False: the former step (fp32 gradients per micro-batch, the scan even for one), kept to measure it.
    diff_params = compute_params(params, model.config, grad_shardings) if lean else params

    def add(acc, grads):
        acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), acc, grads)
        return jax.lax.with_sharding_constraint(acc, grad_shardings)

    if lean and batch["inputs"].shape[0] == 1:  # one micro-batch: no accumulator, no loop
        loss_sum, grads = grad_fn(diff_params, *jax.tree.map(lambda x: x[0], (batch, weights)))
        acc = jax.lax.with_sharding_constraint(jax.tree.map(lambda g: g.astype(jnp.float32), grads), grad_shardings)
    else:
        def body(carry, xs):
            acc, loss_sum = carry
            loss, grads = grad_fn(diff_params, *xs)
            return (add(acc, grads), loss_sum + loss), None

        acc0 = jax.lax.with_sharding_constraint(
            jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params), grad_shardings)
        (acc, loss_sum), _ = jax.lax.scan(body, (acc0, jnp.zeros((), jnp.float32)), (batch, weights))
    grads = jax.tree.map(lambda g, p: (g * scale).astype(p.dtype), acc, params)
    grad_norm = optax.tree.norm(grads).astype(jnp.float32)
    updates, opt_state = optimizer.update(grads, state["opt_state"], params)
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                 "opt_state": opt_state, "rng": state["rng"]}
    metrics = {"loss": loss_sum * scale, "grad_norm": grad_norm, "lr": current_lr(opt_state),
               "n_tokens": jnp.sum(batch["loss_mask"].astype(jnp.float32))}
    return new_state, metrics


def _check_chunk(loss_chunk: int) -> None:
    if not isinstance(loss_chunk, int) or loss_chunk < 0:
        raise ValueError(f"train.loss_chunk must be an int >= 0 (0: plain logits path), got {loss_chunk!r}")


def for_mesh(cfg: LlamaConfig, mesh: jax.sharding.Mesh) -> LlamaConfig:
    """The model config as the step runs it on `mesh`: attention "auto" resolved for the mesh's devices ("tpu"
    also for a TPU topology compiled for on a CPU host)."""
    return cfg.for_platform(platform_of(mesh.devices.flat[0]))


@functools.lru_cache(maxsize=8)  # same (cfg, optimizer, mesh, reduction): reuse the jit and its compiled executables
def _jitted(cfg: LlamaConfig, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh,
            loss_reduction: str, micro_mean_rows: int | None, loss_chunk: int, lean: bool = True):
    check_reduction(loss_reduction, None, micro_mean_rows)
    _check_chunk(loss_chunk)
    abstract = abstract_train_state(cfg, optimizer)
    shardings = state_shardings(cfg, optimizer, mesh, partition.TRAIN_RULES)
    # Logits over the padded vocabulary, its padding masked: slicing them over mp would reshard (model/vocab.py).
    model = Llama(for_mesh(cfg, mesh), trim_logits=False, embed_lookup="local" if lean else "gather")
    fn = functools.partial(_step, model=model, optimizer=optimizer, reduction=loss_reduction,
                           micro_mean_rows=micro_mean_rows, grad_shardings=shardings["params"],
                           loss_chunk=loss_chunk, data_shards=_data_shards(mesh), lean=lean)

    def traced(state, batch):  # the model's activations laid out by the training table
        with partition.rules(partition.TRAIN_RULES):
            return fn(state, batch)

    jitted = jax.jit(traced, in_shardings=(shardings, batch_sharding(mesh)),
                     out_shardings=(shardings, partition.replicated(mesh)), donate_argnums=0)
    return jitted, abstract, shardings


def make_train_step(cfg: LlamaConfig, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                    grad_accum: int, loss_reduction: str = "token", micro_mean_rows: int | None = None,
                    loss_chunk: int = DEFAULT_LOSS_CHUNK, _lean: bool = True) -> Callable[[dict, dict], tuple[dict, dict]]:
    """`train_step(state, batch) -> (state, metrics)`, jitted with the partition rules' shardings on `mesh`.
    The state must carry those shardings (`init_train_state(..., shardings=state_shardings(...))` or
    `Checkpointer.restore`); it is donated. `micro_mean_rows`: see `loss.py` (micro_mean only). `loss_chunk`:
    slots per row of each fused projection+loss chunk (`head_loss.py`); 0 computes full logits instead.
    `_lean=False`: the former, wasteful step (for measuring the difference only; tests/test_step_memory.py)."""
    if grad_accum < 1:
        raise ValueError(f"train.grad_accum must be >= 1, got {grad_accum}")
    jitted, _, shardings = _jitted(cfg, optimizer, mesh, loss_reduction, micro_mean_rows, loss_chunk, _lean)

    def train_step(state: dict, batch: dict) -> tuple[dict, dict]:
        batch = _select(batch, grad_accum, mesh)
        if micro_mean_rows is not None:
            check_reduction(loss_reduction, batch["inputs"].shape[1], micro_mean_rows)
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    train_step.jitted = jitted
    train_step.state_shardings = shardings
    return train_step


def abstract_batch(mesh: jax.sharding.Mesh, grad_accum: int, micro_rows: int, seq_len: int) -> dict:
    """ShapeDtypeStructs (with sharding) of one global batch, with every key the loop feeds (BATCH_KEYS)."""
    shape = (grad_accum, micro_rows, seq_len)
    _check_shape(shape, grad_accum, mesh, "shape")
    return {k: jax.ShapeDtypeStruct(shape, _DTYPES[k], sharding=batch_sharding(mesh)) for k in BATCH_KEYS}


def lower_train_step(cfg: LlamaConfig, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                     grad_accum: int, micro_rows: int, seq_len: int, loss_reduction: str = "token",
                     micro_mean_rows: int | None = None, loss_chunk: int = DEFAULT_LOSS_CHUNK,
                     _lean: bool = True) -> jax.stages.Lowered:
    """The train step lowered for abstract inputs on `mesh` (no array is allocated): call `.compile()` on the
    result for memory/cost analysis, e.g. on a mesh of `jax.experimental.topologies` TPU devices."""
    jitted, abstract, shardings = _jitted(cfg, optimizer, mesh, loss_reduction, micro_mean_rows, loss_chunk, _lean)
    if micro_mean_rows is not None:
        check_reduction(loss_reduction, micro_rows, micro_mean_rows)
    batch = abstract_batch(mesh, grad_accum, micro_rows, seq_len)
    with jax.set_mesh(mesh):
        return jitted.lower(with_shardings(abstract, shardings), batch)
