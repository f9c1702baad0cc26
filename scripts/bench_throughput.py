"""Throughput as users run it: 64 requests whose answers end at different lengths, three ways, in one run.

The requests: random prompts of 16-127 tokens, each with its own max_new_tokens drawn from 16-256 (seed 1), EOS
ignored, greedy, so every answer has a known length and every side does the same useful work (the sum of those
lengths). The sides:
  * engine, continuous: all 64 submitted to one `Engine` at its default slot count, rows refilled as they end;
  * engine, static: the same engine fed 8 requests at a time, each batch run to completion (held by its longest);
  * `camel_jax.generate.generate` in batches of 8 (open-instruct's eval batch size): one left-padded batch decoded
    to the batch's largest max_new_tokens, each row cut to its own; it compiles per (prompt width, max_new_tokens),
    so its first pass (compiles included, as a user's run pays them) is reported apart from the warm passes.
Useful tokens/s each, ratios against `generate` (warm), and whether the greedy outputs are identical across sides.

    python scripts/bench_throughput.py [--preset bench-58m | --gguf FILE] [--reps 2] [--slots N[,M...]]

`--slots 8,16`: the continuous side once per slot count (the first also runs the static side), so what more slots
buy on this machine is measured in the same run.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from bench_engine import models  # noqa: E402
from camel_jax.generate import generate  # noqa: E402
from camel_jax.infer.engine import Engine, Request  # noqa: E402


def requests(cfg, n=64, seed=1):
    rng = np.random.RandomState(seed)
    return [Request(rng.randint(3, cfg.vocab_size, rng.randint(16, 128)).tolist(), int(rng.randint(16, 257)),
                    ignore_eos=True) for _ in range(n)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--gguf", help="a GGUF model file instead of a random preset")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--slots", help="engine slots, or a comma-separated list (default: the Engine's default)")
    ap.add_argument("--batch", type=int, default=8, help="static batch size (open-instruct's: 8)")
    args = ap.parse_args()
    cfg, params, _ = models(args)
    reqs = requests(cfg)
    useful = sum(r.max_new_tokens for r in reqs)
    max_len = -(-max(len(r.prompt) + r.max_new_tokens for r in reqs) // 128) * 128
    engines = [Engine(params, cfg, max_len=max_len, slots=int(n)) for n in args.slots.split(",")] if args.slots \
        else [Engine(params, cfg, max_len=max_len)]
    engine = engines[0]
    b = args.batch

    def continuous(engine=engine):
        start = len(engine._requests)
        return [o[0].tokens for o in engine.run(reqs)[start:]]

    def static():
        out = []
        for i in range(0, len(reqs), b):
            start = len(engine._requests)
            out += [o[0].tokens for o in engine.run(reqs[i:i + b])[start:]]
        return out

    def static_generate():
        out = []
        for i in range(0, len(reqs), b):
            chunk = reqs[i:i + b]
            got = generate(params, cfg, [r.prompt for r in chunk], max(r.max_new_tokens for r in chunk), eos_id=-1)
            out += [g[:r.max_new_tokens] for g, r in zip(got, chunk)]
        return out

    for e in engines:
        e.run(reqs[:b])  # compiles the engine's shapes (one step per window size, one prefill per bucket)
    t_cold, ref = timed(static_generate)
    t_gen, t_stat, t_cont = [], [], [[] for _ in engines]
    outs = []
    for _ in range(args.reps):  # in turn, so the shared machine's other load hits every side alike
        t, out_gen = timed(static_generate)
        t_gen.append(t)
        for e, times in zip(engines, t_cont):
            t, out = timed(functools.partial(continuous, e))
            times.append(t)
            outs.append(out)
        t, out_stat = timed(static)
        t_stat.append(t)
    t_gen, t_stat = statistics.median(t_gen), statistics.median(t_stat)
    t_conts = [statistics.median(t) for t in t_cont]
    t_cont = t_conts[0]
    same = sum(all(o[i] == ref[i] for o in outs) and a == s == r for i, (a, s, r) in
               enumerate(zip(out_gen, out_stat, ref)))
    print(f"{args.gguf or args.preset}, fp32, 64 requests, answers of 16-256 tokens ({useful} useful tokens), "
          f"greedy, EOS ignored; engine slots {', '.join(str(e.slots) for e in engines)}, static batches of {b}; "
          f"medians of {args.reps}")
    for name, t in ((f"generate, batches of {b} (first pass, compiles)", t_cold),
                    (f"generate, batches of {b} (warm)", t_gen),
                    (f"engine, static batches of {b}", t_stat),
                    *((f"engine, continuous, {e.slots} slots", t) for e, t in zip(engines, t_conts))):
        print(f"  {name:<44} {useful / t:8.1f} tok/s ({t:6.1f} s)  {t_gen / t:5.2f}x generate (warm)"
              f"  {t_cold / t:5.2f}x generate (first pass)")
    print(f"  continuous batching alone (engine static / continuous): {t_stat / t_cont:.2f}x")
    print(f"  identical greedy outputs on all sides: {same}/{len(reqs)} requests")


if __name__ == "__main__":
    main()
