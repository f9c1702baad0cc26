"""What bounds the engine's decode step: the step against its weight matmuls alone and against ablations, one run.

Every variant is compiled first, then all are timed in turn (rep by rep, so the shared machine's load hits each
alike) on the same slots (all active, prompts of `--prompt_len`, attending over `--window` slots):
  * step       the engine's `decode.decode_step` as it runs (greedy rows: the sampler's sort is skipped);
  * no_attn    the same with the attention replaced by its query (the cache still written): the attention's share;
  * scan       the layers as a `lax.scan` over stacked weights, the cache a stacked carry written in place:
               the layer-loop choice (the engine unrolls them in Python);
  * floor      its weight matmuls alone (bench_engine.matmul_floor).

    python scripts/bench_decode_step.py [--preset bench-58m | --gguf FILE] [--slots 8] [--prompt_len 256]
        [--window 384] [--max_len 384] [--reps 15] [--window_block 128]
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench_engine import matmul_floor, models  # noqa: E402
from camel_jax.infer import decode  # noqa: E402
from camel_jax.infer.engine import Engine, Request  # noqa: E402
from camel_jax.model.layers import rotary_tables  # noqa: E402


def scan_step(weights, cache, state, *, cfg, window):
    """decode_step with the layers scanned: weights stacked [L, ...], cache {"k","v"} [L, KV, B, S, hd] carried."""
    pos, live = state["lengths"], state["active"]
    b, s = pos.shape[0], cache["k"].shape[3]
    write = jnp.where(live, pos, s)
    rows = jnp.arange(b, dtype=jnp.int32)
    valid = jnp.arange(window, dtype=jnp.int32)[None] <= pos[:, None]
    cos, sin = rotary_tables(pos[:, None], cfg.dim_per_head, cfg.rope_theta)

    def layer(carry, xs):
        x, ck, cv, i = carry

        def attend(q, k, v):
            # i and rows are not adjacent indices, so the update is [B, KV, hd]
            nk = ck.at[i, :, rows, write].set(k[:, 0], mode="drop")
            nv = cv.at[i, :, rows, write].set(v[:, 0], mode="drop")
            out = decode.grouped_attention(q[:, 0], nk[i, :, :, :window], nv[i, :, :, :window], valid)
            return out[:, None], (nk, nv)
        x, (ck, cv) = decode._block(xs, x, cos, sin, attend, cfg)
        return (x, ck, cv, i + 1), None

    x = decode._embed(weights, state["tokens"][:, None], cfg)
    (x, ck, cv, _), _ = jax.lax.scan(layer, (x, cache["k"], cache["v"], 0), weights["layers"])
    logits = decode._logits(weights, decode._rms(x[:, 0], weights["final_norm"], cfg), cfg)
    return {"k": ck, "v": cv}, state, jnp.argmax(logits, -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--gguf", help="a GGUF model file instead of a random preset")
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--prompt_len", type=int, default=256)
    ap.add_argument("--window", type=int, default=384)
    ap.add_argument("--max_len", type=int, help="cache slots per row (default: the window); a serving engine's "
                    "cache is longer than the window it attends")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--window_block", type=int, default=128, help="the engine's first cache block (its default)")
    args = ap.parse_args()
    cfg, params, _ = models(args)
    engine = Engine(params, cfg, slots=args.slots, max_len=args.max_len or args.window,
                    window_block=args.window_block)
    rng = np.random.RandomState(0)
    for _ in range(args.slots):
        engine.submit(Request(rng.randint(3, cfg.vocab_size, args.prompt_len).tolist(), args.window - args.prompt_len,
                              ignore_eos=True))
    engine._fill()
    w, state = engine.weights, engine.state
    runs = {}

    def timed_step(fn, weights, cache):
        """Compiled with the cache and state donated and fed back, as the engine runs it."""
        box = [cache, jax.tree.map(jnp.copy, state)]
        c = jax.jit(functools.partial(fn, cfg=cfg, window=args.window), donate_argnums=(1, 2)).lower(
            weights, *box).compile()

        def run():
            box[0], box[1], tok = c(weights, *box)[:3]
            jax.block_until_ready(tok)
        return run

    def copied():
        return jax.tree.map(jnp.copy, engine.cache)

    runs["step"] = timed_step(decode.decode_step, w, copied())
    real = decode.grouped_attention
    decode.grouped_attention = lambda q, k, v, valid, kt=False: q  # traced once, below, then restored
    try:
        runs["no_attn"] = timed_step(decode.decode_step, w, copied())
    finally:
        decode.grouped_attention = real
    stacked = {**w, "layers": jax.tree.map(lambda *xs: jnp.stack(xs), *w["layers"])}
    runs["scan"] = timed_step(scan_step, stacked, {  # the engine's keys are [KV, B, hd, S] (decode.py's kt)
        n: jnp.stack([jnp.concatenate(c[n], axis=3).swapaxes(2, 3) if n == "k" else jnp.concatenate(c[n], axis=2)
                      for c in copied()]) for n in ("k", "v")})
    runs["floor"] = matmul_floor(cfg, w, args.slots)
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(args.reps):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.gguf or args.preset}, {cfg.dtype}, {args.slots} slots, window {args.window} of "
          f"{engine.max_len} cache slots (the step attends blocks {engine.blocks} up to "
          f"{decode.window_for(engine.blocks, args.window)}), medians of {args.reps}")
    for k, t in med.items():
        print(f"  {k:8s} {t * 1e3:8.2f} ms  {t / med['floor']:.2f}x floor  {t / med['step']:.2f}x step")


if __name__ == "__main__":
    main()
