"""Training FLOPs of one optimizer step, counted from the architecture (XLA's cost_analysis cannot be used: it
costs a while loop's body once, and the step scans over layers and over micro-batches).

MaxText's convention (`calculate_tflops_training_per_device`, tpu_planner_facts.md §3): every matmul costs
2·m·n·k forward and twice that backward (×3 in all); causal self-attention's QKᵀ and PV cost 4·T²·H·hd per row
forward, halved because a causal row attends to half the keys on average; the output head is a matmul over the
padded vocabulary the step computes logits for; the embedding lookup, norms, rotary and softmax are not counted.
These are model FLOPs (MFU's numerator): recomputation under remat is extra hardware work, reported separately.
"""
from __future__ import annotations

import dataclasses

from camel_jax.model.config import LlamaConfig

# Forward passes recomputed in the backward pass, as a fraction of the forward matmul FLOPs: "full" recomputes the
# whole layer forward; "save_dots" keeps every matmul output and recomputes only elementwise work.
RECOMPUTE = {"none": 0.0, "save_dots": 0.0, "full": 1.0}


@dataclasses.dataclass(frozen=True)
class StepFlops:
    tokens: int  # slots per step: global rows × sequence length (padding included: the step computes it)
    qkv: float  # forward + backward, whole step
    attn_out: float
    mlp: float
    attention: float  # causal QKᵀ and PV
    head: float  # the unembedding
    recompute: float  # extra forward work under the remat policy (hardware, not model, FLOPs)

    @property
    def total(self) -> float:
        return self.qkv + self.attn_out + self.mlp + self.attention + self.head

    @property
    def hardware(self) -> float:
        return self.total + self.recompute

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), total=self.total, hardware=self.hardware)


def step_flops(cfg: LlamaConfig, rows: int, seq_len: int) -> StepFlops:
    """FLOPs of one optimizer step over `rows` rows of `seq_len` slots (all micro-batches, all devices)."""
    d, f, hd, layers = cfg.hidden_size, cfg.intermediate_size, cfg.dim_per_head, cfg.num_layers
    h, kv = cfg.num_heads, cfg.kv_heads
    tokens = rows * seq_len
    fwd_bwd = 3 * 2 * tokens  # ×2 per multiply-add, ×3 for forward + backward
    qkv = fwd_bwd * layers * d * (h + 2 * kv) * hd
    attn_out = fwd_bwd * layers * h * hd * d
    mlp = fwd_bwd * layers * 3 * d * f  # SwiGLU: gate, up, down
    attention = 3 * rows * layers * (4 * seq_len * seq_len * h * hd) / 2  # causal: half the score matrix
    head = fwd_bwd * d * cfg.padded_vocab
    fwd_layers = (qkv + attn_out + mlp + attention) / 3
    return StepFlops(tokens, qkv, attn_out, mlp, attention, head, RECOMPUTE[cfg.remat] * fwd_layers)
