"""The one sharding vocabulary: logical axis names on tensors, one rule table per workload mapping them to the mesh.

Tensors are named where they are made, as MaxText and T5X do with Flax's logical partitioning: parameters through
`nn.with_logical_partitioning` in `layers`/`llama` (a scanned stack adds "layers" in front), activations through
`constrain`, kernels under `shard_map` through `mesh_spec`, batches through `batch_sharding`. A workload's table
(`TRAIN_RULES`; `SERVE_RULES` with the KV cache) says which mesh axes each name is split over, so a new
workload is one more table, never a fifth place that spells out mesh axes.

Mesh axes: `dp` (pure data parallel), `fsdp` (data parallel with parameters and optimizer state sharded), `mp`
(tensor/model parallel over heads, the FFN width and the vocabulary). Every name a table lacks, and every parameter
the model declares without names, is an error, never silently replicated. Optimizer moments inherit their
parameter's names (optax maps over the boxed parameters), so the state needs no rules of its own.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec as P

Rules = tuple[tuple[str, Any], ...]

# Parameter names: [V, D] vocab×embed, q/o [D, heads*hd], k/v [D, kv_heads*hd], gate/up/down [D, F] embed×mlp,
# norms' scales, the scan's layer axis. Activation names: batch rows, sequence slots, and act_* for the widths.
TRAIN_RULES: Rules = (
    ("batch", ("dp", "fsdp")),
    ("seq", None),
    ("vocab", "mp"),
    ("embed", "fsdp"),
    ("heads", "mp"),
    ("kv_heads", "mp"),
    ("mlp", "mp"),
    ("norm", None),
    ("layers", None),
    ("act_embed", None),
    ("act_heads", "mp"),
    ("act_kv_heads", "mp"),
    ("head_dim", None),
    ("act_mlp", "mp"),
    ("act_vocab", "mp"),
)


def override(table: Rules, **mesh_axes: Any) -> Rules:
    """`table` with some of its names mapped to other mesh axes: a workload that differs from another in a few."""
    unknown = set(mesh_axes) - {name for name, _ in table}
    if unknown:
        raise ValueError(f"override: names {sorted(unknown)} are not in the table")
    return tuple((name, mesh_axes.get(name, axes)) for name, axes in table)


# Serving (infer/): slots over dp, heads, widths and vocabulary over mp, weights whole on every dp replica (no
# fsdp: a decode step would gather every weight for one token per slot). The KV cache [KV, B, S, hd] per layer.
SERVE_RULES: Rules = override(TRAIN_RULES, batch="dp", embed=None) + (
    ("cache_batch", "dp"),
    ("cache_seq", None),
    ("cache_kv_heads", "mp"),
)
# A prefill runs one prompt (a batch of 1, which dp cannot split): as serving, with its rows replicated.
PREFILL_RULES: Rules = override(SERVE_RULES, batch=None)

# Logical names of the model's activations, written once here and used by layers/llama/splash.
BTD = ("batch", "seq", "act_embed")  # the residual stream [B, T, D]
BTHD = ("batch", "seq", "act_heads", "head_dim")  # queries, attention outputs [B, T, H, hd]
BTKD = ("batch", "seq", "act_kv_heads", "head_dim")  # keys, values [B, T, KV, hd]
BHTD = ("batch", "act_heads", "seq", "head_dim")  # a kernel's heads-major layout [B, H, T, hd]
BT = ("batch", "seq")  # tokens, segment ids, positions [B, T]
CACHE = ("cache_kv_heads", "cache_batch", "cache_seq", "head_dim")  # one layer's served KV cache [KV, B, S, hd]


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


@contextlib.contextmanager
def rules(table: Rules) -> Iterator[None]:
    """Run a workload under its table: `constrain`, `mesh_spec` and the param rules read it (Flax's axis rules)."""
    with nn.logical_axis_rules(table):
        yield


def current_rules() -> Rules:
    """The table in context (`rules(...)`), TRAIN_RULES outside any."""
    return tuple(nn.get_logical_axis_rules()) or TRAIN_RULES


def to_mesh_axes(names: Sequence[str | None], table: Rules | None = None,
                 mesh_axes: Sequence[str] | None = None) -> P:
    """Logical names -> a PartitionSpec of mesh axes. A name the table lacks is an error; mesh axes the mesh lacks
    (`mesh_axes` given) are dropped, so a tensor runs on any subset of dp/fsdp/mp."""
    table = table if table is not None else current_rules()
    known = {name for name, _ in table}
    unknown = [n for n in names if n is not None and n not in known]
    if unknown:
        raise ValueError(f"logical axis names {unknown} are not in the sharding rule table (known: "
                         f"{', '.join(sorted(known))})")
    spec = nn.logical_to_mesh_axes(tuple(names), table)
    if mesh_axes is None:
        return spec

    def keep(entry):
        if entry is None:
            return None
        kept = tuple(a for a in (entry if isinstance(entry, tuple) else (entry,)) if a in mesh_axes)
        return kept if len(kept) > 1 else (kept[0] if kept else None)

    return P(*(keep(e) for e in spec))


def active_axes() -> tuple[str, ...]:
    """Axis names of the mesh in context (jax.set_mesh), or () outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    return tuple(mesh.axis_names) if mesh is not None and not mesh.empty else ()


def mesh_spec(names: Sequence[str | None]) -> P | None:
    """The PartitionSpec of a tensor with these logical names on the mesh in context (None outside a mesh): the
    in/out specs of kernels run under `shard_map`."""
    axes = active_axes()
    return to_mesh_axes(names, mesh_axes=axes) if axes else None


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names; a no-op outside a mesh (single-device use, tests,
    conversion)."""
    spec = mesh_spec(names)
    return x if spec is None else jax.lax.with_sharding_constraint(x, spec)


def data_axes(mesh: jax.sharding.Mesh, table: Rules | None = None) -> tuple[str, ...]:
    """The mesh axes batch rows are split over."""
    entry = to_mesh_axes(("batch",), table, mesh.axis_names)[0]
    return () if entry is None else (entry if isinstance(entry, tuple) else (entry,))


def data_shards(mesh: jax.sharding.Mesh, table: Rules | None = None) -> int:
    """How many ways batch rows are split (dp×fsdp under TRAIN_RULES)."""
    size = 1
    for a in data_axes(mesh, table):
        size *= mesh.shape[a]
    return size


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 3, table: Rules | None = None) -> NamedSharding:
    """[grad_accum, rows, T] train batches (ndim 3) or [rows, T] (ndim 2), rows split as "batch"."""
    names = ((None,) * (ndim - 2)) + BT
    return NamedSharding(mesh, to_mesh_axes(names, table, mesh.axis_names))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def logical_specs(boxed: Any) -> Any:
    """Logical PartitionSpecs of a tree that holds Flax-boxed (`nn.LogicallyPartitioned`) parameters, e.g. an
    abstract train state initialised from boxed parameters: boxes give their names (moments inherit them), other
    array leaves (step, rng, counters) are replicated. A leaf under "params" without names is an error."""
    def check(path, leaf):
        if not isinstance(leaf, nn.LogicallyPartitioned) and "params" in path_str(path).split("/") \
                and len(getattr(leaf, "shape", ())) > 0:
            raise ValueError(f"parameter {path_str(path)!r} (shape {leaf.shape}) has no logical axis names; "
                             f"declare them with nn.with_logical_partitioning where it is created")
    jax.tree_util.tree_map_with_path(check, boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    return nn.get_partition_spec(boxed)


def tree_shardings(logical: Any, mesh: jax.sharding.Mesh, table: Rules | None = None) -> Any:
    """NamedShardings on `mesh` for a tree of logical PartitionSpecs (`logical_specs`), per the table."""
    return jax.tree.map(lambda s: NamedSharding(mesh, to_mesh_axes(tuple(s), table, mesh.axis_names)), logical,
                        is_leaf=lambda x: isinstance(x, P))
