"""The training step's dense matmuls alone: XLA (what camel_jax runs) vs PyTorch's CPU BLAS, shape by shape, one run.

Why: on CPU a LLaMA step is mostly matmuls, so their rate bounds what any framework can reach. This times, for
each projection of a preset (q, k, v, o, gate, up, down, and the vocabulary head) at a batch of `batch x seq`
tokens, the three fp32 matmuls of forward+backward (y = x W, dx = dy W^T, dW = x^T dy), each jitted alone in JAX and
as `torch.mm` in PyTorch, medians over blocks of calls taken in turn. It prints GFLOP/s per shape and the step's total
(layers x projections + head), i.e. the floor each side's step cannot go under, and their ratio.

    python scripts/bench_matmul.py [--preset bench-58m] [--batch 4] [--seq 512] [--reps 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from camel_jax.model.config import get_preset  # noqa: E402


def projections(cfg) -> list[tuple[str, int, int, int]]:
    """(name, in features, out features, times per step) of every dense matmul in one forward pass."""
    hd, n = cfg.dim_per_head, cfg.num_layers
    d, f = cfg.hidden_size, cfg.intermediate_size
    return [("q", d, cfg.num_heads * hd, n), ("k", d, cfg.kv_heads * hd, n), ("v", d, cfg.kv_heads * hd, n),
            ("o", cfg.num_heads * hd, d, n), ("gate", d, f, n), ("up", d, f, n), ("down", f, d, n),
            ("head", d, cfg.vocab_size, 1)]


def median_blocks(fns: dict, reps: int, rounds: int = 3) -> dict:
    """Median seconds per call; each side runs `reps` calls in a row (after one untimed call), sides taking turns
    for `rounds`. Blocks, not call-by-call alternation: both runtimes' worker threads spin for a while after a
    parallel region, so a millisecond matmul started right after the other side's would share the cores with it."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    cfg = get_preset(args.preset)
    m = args.batch * args.seq
    rng = np.random.default_rng(0)
    print(f"preset {args.preset}, {m} tokens ({args.batch} x {args.seq}), fp32, {os.cpu_count()} CPU threads, "
          f"jax {jax.__version__} vs torch {torch.__version__}; median of 3 blocks of {args.reps} calls, taken in turn")
    print(f"{'matmul':16s} {'shape':>22s} {'jax GF/s':>9s} {'torch GF/s':>11s} {'jax/torch':>9s}")
    total = {"jax": 0.0, "torch": 0.0}
    for name, fin, fout, times in projections(cfg):
        x, w, dy = (rng.standard_normal(s, dtype=np.float32) for s in ((m, fin), (fin, fout), (m, fout)))
        jx, jw, jdy = (jnp.asarray(a) for a in (x, w, dy))
        tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
        cases = {  # the three matmuls of a projection's forward and backward, as each framework writes them
            "y = x W": (jax.jit(lambda x, w, dy: x @ w), lambda: torch.mm(tx, tw), (m, fin, fout)),
            "dx = dy W^T": (jax.jit(lambda x, w, dy: dy @ w.T), lambda: torch.mm(tdy, tw.t()), (m, fout, fin)),
            "dW = x^T dy": (jax.jit(lambda x, w, dy: x.T @ dy), lambda: torch.mm(tx.t(), tdy), (fin, m, fout)),
        }
        for label, (jfn, tfn, (a, k, b)) in cases.items():
            med = median_blocks({"jax": lambda: jfn(jx, jw, jdy).block_until_ready(), "torch": tfn}, args.reps)
            flops = 2 * a * k * b
            for side in total:
                total[side] += med[side] * times
            print(f"{name + ' ' + label:16s} {f'[{a},{k}]x[{k},{b}]':>22s} {flops / med['jax'] / 1e9:9.0f} "
                  f"{flops / med['torch'] / 1e9:11.0f} {med['torch'] / med['jax']:9.2f}x")
    print(f"all dense matmuls of one step: jax {total['jax'] * 1e3:.0f} ms, torch {total['torch'] * 1e3:.0f} ms, "
          f"ratio torch/jax time {total['torch'] / total['jax']:.2f}x")


if __name__ == "__main__":
    main()
