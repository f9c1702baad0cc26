"""The train state: a plain dict pytree ``{"step", "params", "opt_state", "rng"}``.

A dict (not a flax TrainState class) so that Orbax saves it as an ordinary nested tree and `params_io.load_params`
can take the params out of a training checkpoint without knowing this module. Shardings come from the parameters'
logical axis names (partition.py): the optimizer is initialised on the boxed parameters, so its moments carry
their parameter's names.

* ``step``: int32 scalar, the number of optimizer updates applied (the next update uses ``lr_schedule(step)``).
* ``params``: the model parameter tree (fp32 master weights by default).
* ``opt_state``: the optax state of `optimizer.make_optimizer` (moments mirror ``params``' paths).
* ``rng``: a raw uint32[2] PRNG key (``jax.random.key_data`` form, so Orbax stores it as a plain array). The LLaMA
  step uses no randomness; it is carried so that a resumed run has the same key for anything that will.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from camel_jax.model.llama import boxed_params, init_params
from camel_jax.model.config import LlamaConfig
from camel_jax.model.partition import Rules, logical_specs, tree_shardings

TrainState = dict  # {"step": int32[], "params": ..., "opt_state": ..., "rng": uint32[2]}
STATE_KEYS = ("step", "params", "opt_state", "rng")


def _raw_key(rng: jax.Array) -> jax.Array:
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(rng)
    if rng.dtype != jnp.uint32 or rng.shape != (2,):
        raise ValueError(f"rng must be a jax.random.PRNGKey (uint32[2]) or a typed key, got {rng.dtype}{rng.shape}")
    return rng


def init_train_state(cfg: LlamaConfig, optimizer: optax.GradientTransformation, rng: jax.Array,
                     params: Any = None, shardings: Any = None) -> TrainState:
    """A fresh state at step 0. Without `params`, parameters are initialised from `rng` (as `model.init_params`).

    With `shardings` (a tree like `state_shardings(...)`), everything is created directly in its final sharding:
    random params and the optimizer moments are produced by a jit with those out_shardings, so no host or device
    ever holds a full copy; given `params` are placed (a no-op when they already have that sharding), not copied.
    Traceable without `shardings` (`abstract_train_state` runs it under jax.eval_shape)."""
    if not isinstance(cfg, LlamaConfig):
        raise TypeError("init_train_state(cfg, optimizer, rng, params=None, shardings=None): cfg must be a "
                        f"LlamaConfig, got {type(cfg).__name__}; pass loaded parameters as params=")
    rng = _raw_key(jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng)
    init_rng, state_rng = jax.random.split(rng)
    if shardings is None:
        if params is None:
            params = init_params(cfg, init_rng)
        opt_state = optimizer.init(params)
        step = jnp.zeros((), jnp.int32)
    else:
        if params is None:
            params = jax.jit(lambda r: init_params(cfg, r), out_shardings=shardings["params"])(init_rng)
        else:
            params = jax.device_put(params, shardings["params"])
        opt_state = jax.jit(optimizer.init, out_shardings=shardings["opt_state"])(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), shardings["step"])
        state_rng = jax.device_put(state_rng, shardings["rng"])
    return {"step": step, "params": params, "opt_state": opt_state, "rng": state_rng}


def abstract_train_state(cfg: LlamaConfig, optimizer: optax.GradientTransformation) -> TrainState:
    """Shapes and dtypes of the whole train state (jax.ShapeDtypeStruct leaves), without allocating anything."""
    return jax.eval_shape(lambda: init_train_state(cfg, optimizer, jax.random.PRNGKey(0)))


def state_logical_specs(cfg: LlamaConfig, optimizer: optax.GradientTransformation) -> Any:
    """Logical PartitionSpecs of the train state: parameters as the layers name them, moments as their parameter,
    step, rng and schedule counters replicated."""
    def boxed():
        params = boxed_params(cfg, jax.random.PRNGKey(0))
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params),
                "rng": jnp.zeros((2,), jnp.uint32)}
    return logical_specs(jax.eval_shape(boxed))


def state_shardings(cfg: LlamaConfig, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                    table: Rules | None = None) -> Any:
    """NamedShardings for every leaf of the train state on `mesh`, under a workload's rule table (training's by
    default)."""
    return tree_shardings(state_logical_specs(cfg, optimizer), mesh, table)


def with_shardings(abstract_state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying their sharding: the target for `Checkpointer.restore` and for AOT lowering."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


def sharded_abstract_state(cfg: LlamaConfig, optimizer: optax.GradientTransformation,
                           mesh: jax.sharding.Mesh) -> TrainState:
    """`abstract_train_state` with each leaf's sharding on `mesh` attached."""
    return with_shardings(abstract_train_state(cfg, optimizer), state_shardings(cfg, optimizer, mesh))
