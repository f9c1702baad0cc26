"""The one place that says how every array is laid out on the mesh: parameter rules, optimizer-state rules
(by inheritance from the parameter paths), batch and activation specs.

Axes: `dp` (pure data parallel), `fsdp` (data parallel with parameters and optimizer state sharded), `mp`
(tensor/model parallel over heads and the FFN width). The batch is split over (dp, fsdp).
Rules are ordered regexes over '/'-joined parameter paths, first match wins; a leaf no rule matches is an
error, never silently replicated. Scanned layer stacks carry a leading layer axis, which is never sharded.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

BATCH = ("dp", "fsdp")

# (regex, spec of the unscanned weight). Flax kernels are [in, out].
PARAM_RULES: tuple[tuple[str, tuple], ...] = (
    (r"embed/embedding$", ("mp", "fsdp")),  # [V, D]
    (r"attn/(q|k|v)/kernel$", ("fsdp", "mp")),  # [D, heads*hd]
    (r"attn/o/kernel$", ("mp", "fsdp")),  # [heads*hd, D]
    (r"mlp/(gate|up)/kernel$", ("fsdp", "mp")),  # [D, F]
    (r"mlp/down/kernel$", ("mp", "fsdp")),  # [F, D]
    (r"(attn_norm|mlp_norm|final_norm)/scale$", (None,)),
    (r"lm_head/kernel$", ("fsdp", "mp")),  # [D, V]
)


def path_str(path: Sequence[Any]) -> str:
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def spec_for(path: str, shape: tuple[int, ...]) -> P:
    """The PartitionSpec of one leaf (parameter, or optimizer moment that mirrors a parameter's path)."""
    if len(shape) == 0 or all(s == 1 for s in shape):
        return P()
    for pattern, spec in PARAM_RULES:
        if re.search(pattern, path):
            extra = len(shape) - len(spec)
            if extra < 0 or extra > 1:
                raise ValueError(f"partition rule {pattern!r} expects rank {len(spec)} (+1 when scanned) for "
                                 f"{path}, got shape {shape}")
            return P(*((None,) * extra + spec))  # scanned stacks: leading layer axis unsharded
    raise ValueError(f"no partition rule matches parameter {path!r} with shape {shape}")


def tree_specs(tree: Any) -> Any:
    """PartitionSpecs for a whole tree (params, or a train state whose moments mirror the param paths).
    Leaves outside the parameter structure (step counters, RNG, scalars) are replicated."""
    def one(path, leaf):
        shape = tuple(getattr(leaf, "shape", ()))
        p = path_str(path)
        if len(shape) == 0 or not any(re.search(rx, p) for rx, _ in PARAM_RULES):
            if len(shape) > 0 and "params" in p.split("/"):
                return spec_for(p, shape)  # raises: a parameter with no rule
            return P()
        return spec_for(p, shape)
    return jax.tree_util.tree_map_with_path(one, tree)


def tree_shardings(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    return jax.tree.map(lambda s: NamedSharding(mesh, s), tree_specs(tree), is_leaf=lambda x: isinstance(x, P))


def batch_spec(ndim: int = 2) -> P:
    return P(BATCH, *([None] * (ndim - 1)))


def active_axes() -> tuple[str, ...]:
    """Axis names of the mesh in context (jax.set_mesh), or () outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    return tuple(mesh.axis_names) if mesh is not None and not mesh.empty else ()


def constrain(x: jax.Array, spec: tuple) -> jax.Array:
    """Sharding constraint on an activation, a no-op outside a mesh (single-device use, tests, conversion).
    Axis names the active mesh lacks are dropped, so the model runs on any subset of dp/fsdp/mp."""
    axes = active_axes()
    if not axes:
        return x

    def keep(entry):
        if entry is None:
            return None
        names = entry if isinstance(entry, tuple) else (entry,)
        names = tuple(n for n in names if n in axes)
        return names if len(names) > 1 else (names[0] if names else None)

    return jax.lax.with_sharding_constraint(x, P(*(keep(e) for e in spec)))
