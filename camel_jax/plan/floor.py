"""The analytic memory floor of a train step per device, printed beside XLA's total so waste stays visible.

What the step cannot do without: the sharded train state and batch (exact, from the shardings), one micro-batch's
gradient in the compute dtype and the compute-dtype copy of the weights it is taken against (train/step.py: the
gradient w.r.t. the bf16 copy is the fp32 one's exact value, in half the bytes), one fp32 gradient accumulator
sharded like the parameters only when accumulating (grad_accum > 1), one micro-batch's saved activations under the remat policy,
one layer's working set while it is recomputed and differentiated, the fused loss chunk's fp32 logits and their
gradient, the output head as the fused loss uses it (its [hidden, vocab] kernel gathered over fsdp in the compute
dtype, and one chunk's fp32 partial weight gradient h^T dlogits of the same shape, both split over mp only:
head_loss.py), and one layer's weights gathered over fsdp in the compute dtype, twice (the layer and the next
one's prefetch). An estimate from shapes (counting the layer's matmul outputs and elementwise results as below), not a
bound XLA promises: the gap between it and XLA's total is what to look at, and to remove.
"""
from __future__ import annotations

import jax.numpy as jnp

from camel_jax.model.config import LlamaConfig


def layer_tensors(cfg: LlamaConfig) -> dict:
    """Widths (elements per token) of one layer's activations, by what each remat policy keeps."""
    d, f, hd, h, kv = cfg.hidden_size, cfg.intermediate_size, cfg.dim_per_head, cfg.num_heads, cfg.kv_heads
    dots = (h + 2 * kv) * hd + d + 2 * f + d  # q, k, v, attention out-projection, gate, up, down
    rest = d + 2 * d + h * hd + f  # layer input, two norm outputs, attention output, the gated product
    return {"input": d, "dots": dots, "all": dots + rest}


def floor_bytes(cfg: LlamaConfig, memory: dict, rows_per_device: int, seq_len: int, mp: int,
                loss_chunk: int, grad_accum: int = 1) -> dict:
    """Per-device bytes of each part of the floor, and their total ("floor"). `memory["gradients"]`: the fp32
    gradient tree's sharded bytes (planner.state_memory)."""
    c = jnp.dtype(cfg.dtype).itemsize
    fp32_grads = memory["gradients"]
    compute = fp32_grads * c // 4 if c < 4 else 0  # the cast copy (fp32 compute: the params themselves)
    w = layer_tensors(cfg)
    tokens = rows_per_device * seq_len
    keep = {"full": w["input"], "save_dots": w["dots"] + w["input"], "none": w["all"]}[cfg.remat]
    saved = cfg.num_layers * tokens * keep * c // mp
    working = 2 * tokens * w["all"] * c // mp  # one layer's activations and their cotangents
    chunk = loss_chunk or seq_len
    head = 2 * rows_per_device * min(chunk, seq_len) * cfg.padded_vocab * 4 // mp
    head_kernel = cfg.hidden_size * cfg.padded_vocab * c // mp  # gathered over fsdp, vocab split over mp
    head_partial = cfg.hidden_size * cfg.padded_vocab * 4 // mp if loss_chunk else 0  # one chunk's fp32 h^T dlogits
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.dim_per_head
    layer_params = d * (cfg.num_heads + cfg.kv_heads) * hd * 2 + 3 * d * f
    gathered = 2 * layer_params * c // mp
    parts = {"state": memory["state"], "batch": memory["batch"], "compute_copy": compute,
             "gradients": fp32_grads * c // 4, "gradient_accumulator": fp32_grads if grad_accum > 1 else 0,
             "saved_activations": saved, "layer_working_set": working, "loss_chunk": head,
             "head_kernel": head_kernel, "head_partial_gradient": head_partial,
             "gathered_weights": gathered}
    return dict(parts, floor=sum(parts.values()))
