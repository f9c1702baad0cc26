"""The LLaMA decoder-only language model.

Layers are stacked with `nn.scan` (parameters carry a leading layer axis), so compile time does not grow with
depth; remat wraps the scanned block. The same module runs training (full sequences, packed or padded) and
cached decoding (`init_cache` + `cache=`), so the sampler and the train step share one set of weights and code.

Parameter tree (scanned):
  embed/embedding [V, D]; layers/{attn_norm,mlp_norm}/scale [L, D];
  layers/attn/{q,k,v}/kernel [L, D, heads*hd]; layers/attn/o/kernel [L, heads*hd, D];
  layers/mlp/{gate,up}/kernel [L, D, F]; layers/mlp/down/kernel [L, F, D]; final_norm/scale [D]; lm_head/kernel [D, V]
where V is `config.padded_vocab`: rows/columns past `vocab_size` are zero and masked out (model/vocab.py).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from camel_jax.model.attention import BLOCK, WholeRows, attention_mask, key_block_starts
from camel_jax.model.layers import DecoderLayer, Linear, RMSNorm, project, rotary_tables
from camel_jax.model.config import LlamaConfig, platform_of
from camel_jax.model.partition import BT, BTD, Rules, constrain, logical_specs, mesh_spec, tree_shardings
from camel_jax.model.splash import RESIDUALS
from camel_jax.model.vocab import mask_padded_logits, zero_padded_init

_policies = jax.checkpoint_policies
_REMAT = {
    "full": _policies.nothing_saveable,
    # The projections' outputs, and the splash kernel's residuals (else its forward runs again in the backward).
    "save_dots": _policies.save_from_both_policies(_policies.checkpoint_dots_with_no_batch_dims,
                                                   _policies.save_only_these_names(RESIDUALS)),
}


def default_platform() -> str:
    """The default backend's platform, as `LlamaConfig.for_platform` takes it."""
    return platform_of(jax.devices()[0])


def _resolved(cfg: LlamaConfig) -> LlamaConfig:
    """A still-"auto" attention made concrete for the default backend (the train step resolves it earlier, from
    its mesh)."""
    return cfg.for_platform(default_platform()) if cfg.attention == "auto" else cfg


class Llama(nn.Module):
    """trim_logits: the logits' vocabulary axis is the real one (vocab_size, the default: the public output), or
    the padded one with padded columns masked (the train step and the sampler: no reshard over mp; vocab.py).
    embed_lookup: see `embed_lookup`."""
    config: LlamaConfig
    trim_logits: bool = True
    embed_lookup: str = "local"  # "gather": the whole-table gather, kept only to measure it (test_step_memory)

    def setup(self):
        cfg = self.config
        dt, pdt = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        normal = nn.initializers.normal(0.02)
        self.embed = nn.Embed(cfg.padded_vocab, cfg.hidden_size, dtype=dt, param_dtype=pdt,
                              embedding_init=nn.with_logical_partitioning(
                                  zero_padded_init(normal, cfg.vocab_size, 0), ("vocab", "embed")))
        body = DecoderLayer
        if cfg.remat != "none":
            body = nn.remat(body, policy=_REMAT[cfg.remat], prevent_cse=False)
        self.layers = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True},
                              metadata_params={nn.PARTITION_NAME: "layers"},
                              in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                              length=cfg.num_layers, unroll=cfg.scan_unroll)(_resolved(cfg))
        self.final_norm = RMSNorm(cfg.rms_norm_eps, dt, pdt)
        if not cfg.tie_embeddings:
            self.lm_head = Linear(cfg.padded_vocab, dt, pdt, ("embed", "vocab"),
                                  zero_padded_init(normal, cfg.vocab_size, 1))

    def _whole_rows(self, mask, segment_ids) -> WholeRows | None:
        """What the training attention needs about whole rows besides q/k/v: the segment ids (splash), or the
        first key block of each query block (block_sparse, rows longer than a block); None: plain attention."""
        impl = _resolved(self.config).attention
        if impl in ("splash", "splash_interpret"):
            return WholeRows(segment_ids=segment_ids)
        if impl in ("cudnn", "cudnn_xla"):
            return WholeRows()  # the mask alone
        if impl == "block_sparse" and mask.shape[-1] > BLOCK:
            return WholeRows(key_block_starts=key_block_starts(mask))
        return None

    def __call__(self, tokens, positions=None, segment_ids=None, cache=None, cache_index=None, head=True):
        """tokens [B, T] int. positions [B, T] (rotary positions; restart per packed segment).
        segment_ids [B, T]: 0 = padding, equal ids attend to each other; default all ones.
        cache: from `init_cache`; cache_index: the slot of tokens[:, 0] in it. Returns (logits fp32, cache), or
        with head=False (the train step's fused loss) the final-normed hidden states [B, T, D] instead of logits."""
        cfg = self.config
        b, t = tokens.shape
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        start = 0 if cache_index is None else cache_index
        q_slots = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        if positions is None:
            positions = q_slots
        x = embed_lookup(self.embed.embedding, constrain(tokens, BT), cfg.dtype, self.embed_lookup)
        cos, sin = rotary_tables(positions, cfg.dim_per_head, cfg.rope_theta)
        if cache is None:
            mask = attention_mask(q_slots, segment_ids, q_slots, segment_ids)
            x, _ = self.layers(x, None, cos, sin, mask, 0, self._whole_rows(mask, segment_ids))
            new_cache = None
        else:
            seg = jax.lax.dynamic_update_slice(cache["seg"], segment_ids.astype(jnp.int32), (0, start))
            rows = None
            if isinstance(start, int) and start == 0 and t > 1:
                # A prefill: slots before t hold nothing else, so the prompt attends only within itself, and the
                # training attention path (block-sparse or splash) replaces attention over the whole cache.
                mask = attention_mask(q_slots, segment_ids, q_slots, segment_ids)
                rows = self._whole_rows(mask, segment_ids)
            if rows is None:
                k_slots = jnp.broadcast_to(jnp.arange(seg.shape[1], dtype=jnp.int32)[None], seg.shape)
                mask = attention_mask(q_slots, segment_ids, k_slots, seg)
            x, kv = self.layers(x, {"k": cache["k"], "v": cache["v"]}, cos, sin, mask, start, rows)
            new_cache = {**kv, "seg": seg}
        x = self.final_norm(x)
        if not head:
            return x, new_cache
        if cfg.tie_embeddings:
            logits = project(x, self.embed.embedding.T, jnp.dtype(cfg.dtype))
        else:
            logits = self.lm_head(x)
        logits = constrain(logits.astype(jnp.float32), ("batch", "seq", "act_vocab"))
        if self.trim_logits:
            logits = logits[..., :cfg.vocab_size]  # a no-op unless the vocabulary is padded
        return mask_padded_logits(logits, cfg.vocab_size), new_cache


def _axes(entry) -> tuple[str, ...]:
    return () if entry is None else (entry if isinstance(entry, tuple) else (entry,))


def embed_lookup(table: jax.Array, tokens: jax.Array, dtype: Any, how: str = "local") -> jax.Array:
    """table [V, D] (the parameter, sharded vocab x embed) looked up at tokens [B, T]: [B, T, D] in `dtype`.

    Why not `take`: GSPMD gathers the table whole on every device before the lookup (in fp32, then cast: 1 GiB per
    device at 65B). When the table's D is split over axes the rows are also split over (fsdp in training), each
    device instead looks its data-shard group's tokens up in its own [V/mp, D/fsdp] slice (int32 all-gather of the
    ids), the vocab slices are summed over mp (one nonzero term per token: exact), and an all-to-all over fsdp
    trades row blocks for D blocks. Rows are cast after the lookup, so the gradient is an fp32 scatter-add into
    the device's own slice. Elsewhere (serving, no mesh, how="gather") the old gather-then-take runs."""
    t_spec, b_spec, o_spec = mesh_spec(("vocab", "embed")), mesh_spec(BT), mesh_spec(BTD)
    if t_spec is not None and how == "local":
        v_axes, e_axes, rows = _axes(t_spec[0]), _axes(t_spec[1]), _axes(b_spec[0])
        sizes = jax.sharding.get_abstract_mesh().shape
        split = math.prod(sizes[a] for a in rows) if rows else 1
        if e_axes and set(e_axes) <= set(rows) and not set(v_axes) & set(rows) and o_spec[2] is None \
                and tokens.shape[0] % split == 0 and table.shape[0] % math.prod(sizes[a] for a in v_axes) == 0:
            return _local_lookup(table, tokens, dtype, v_axes, e_axes, t_spec, b_spec, o_spec)
    elif how not in ("local", "gather"):
        raise ValueError(f"Llama.embed_lookup must be 'local' or 'gather', got {how!r}")
    # The table gathered over fsdp first (as FSDP does for every weight), kept split over vocab on mp: a lookup
    # from the ("mp", "fsdp") table straight into batch-sharded rows made GSPMD rematerialise it in full.
    table = constrain(table, ("act_vocab", None)).astype(dtype)
    return constrain(jnp.take(table, tokens, axis=0), BTD)


def _local_lookup(table, tokens, dtype, v_axes, e_axes, t_spec, b_spec, o_spec):
    def local(tab, ids):  # tab [V/mp, D/fsdp], ids [B/(dp*fsdp), T]
        ids = jax.lax.all_gather(ids, e_axes, axis=0, tiled=True)  # the rows of every device sharing this D slice
        if v_axes:
            n = tab.shape[0]
            own = ids - jax.lax.axis_index(v_axes) * n
            hit = (own >= 0) & (own < n)
            x = jnp.take(tab, jnp.where(hit, own, 0), axis=0)
            x = jax.lax.psum(jnp.where(hit[..., None], x, 0).astype(dtype), v_axes)
        else:
            x = jnp.take(tab, ids, axis=0).astype(dtype)
        return jax.lax.all_to_all(x, e_axes, split_axis=0, concat_axis=2, tiled=True)  # own rows, all of D

    return jax.shard_map(local, in_specs=(t_spec, b_spec), out_specs=o_spec)(table, tokens)


def head_kernel(params: dict, config: LlamaConfig) -> jax.Array:
    """The output projection as a [D, padded_vocab] matrix (lm_head, or the embedding transposed when tied); its
    padded columns must be masked out of any loss (`head_nll_sum(..., vocab=config.vocab_size)`)."""
    if config.tie_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]


def init_cache(config: LlamaConfig, batch: int, max_len: int, dtype: Any = None) -> dict:
    """An empty KV cache: k/v [L, B, S, kv_heads, hd] and the slots' segment ids [B, S] (0 = empty)."""
    dt = jnp.dtype(dtype or config.dtype)
    shape = (config.num_layers, batch, max_len, config.kv_heads, config.dim_per_head)
    return {"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt),
            "seg": jnp.zeros((batch, max_len), jnp.int32)}


def boxed_params(config: LlamaConfig, rng: jax.Array) -> dict:
    """Parameters as Flax creates them: each leaf boxed with its logical axis names (partition.py)."""
    return Llama(config).init(rng, jnp.zeros((1, 8), jnp.int32))["params"]


def init_params(config: LlamaConfig, rng: jax.Array) -> dict:
    return nn.meta.unbox(boxed_params(config, rng))


def boxed_abstract_params(config: LlamaConfig) -> dict:
    """Shapes of the boxed parameter tree (jax.eval_shape): what optimizer state shardings are derived from."""
    return jax.eval_shape(lambda: boxed_params(config, jax.random.PRNGKey(0)))


@functools.lru_cache(maxsize=32)
def param_logical_specs(config: LlamaConfig) -> dict:
    """The parameter tree's logical PartitionSpecs, as the layers declare them (no allocation)."""
    return logical_specs({"params": boxed_abstract_params(config)})["params"]


def param_shardings(config: LlamaConfig, mesh: jax.sharding.Mesh, table: Rules | None = None) -> dict:
    """NamedShardings of the parameter tree on `mesh` under a workload's rule table (default: the one in context,
    else training's)."""
    return tree_shardings(param_logical_specs(config), mesh, table)


def abstract_params(config: LlamaConfig) -> dict:
    """Shapes and dtypes of the parameter tree without allocating (jax.eval_shape)."""
    return jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Rotary positions for a (left- or right-) padded batch: 0 at each row's first real token."""
    mask = mask.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
