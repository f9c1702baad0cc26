"""int8 weight-only quantization against fp32 on the same engine, one run: speed, memory, and the logit error.

The model: SmolLM2-135M-Instruct (its GGUF dequantized to fp32 by transformers) or a preset. The prompts: real
instructions (the first `--prompts` of ../shared/data/alpaca_eval) in SmolLM2's chat template. Printed:
  * weight bytes fp32 / int8 (with the scales) / bf16;
  * the logit error: every prompt plus fp32's greedy answer (up to --new tokens) teacher-forced through fp32, int8
    and bf16 weights; max and mean |logit - fp32 logit| over every position and the real vocabulary, and how often
    the argmax equals fp32's;
  * greedy agreement: int8's free-running greedy answer against fp32's, token for token (how many prompts give the
    same answer, and the first differing position of the others);
  * tokens/s: the engine (8 slots, --new tokens forced per prompt) fp32 and int8 in turn, medians of --reps; and
    the decode step alone in each.

    python scripts/bench_int8.py [--gguf FILE | --preset bench-58m] [--prompts 8] [--new 128] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench_engine import gguf_model, median_time  # noqa: E402
from camel_jax.infer import decode  # noqa: E402
from camel_jax.infer.engine import Engine, Request  # noqa: E402
from camel_jax.infer.quantize import weight_bytes  # noqa: E402
from camel_jax.model.attention import attention_mask, dot_attention  # noqa: E402
from camel_jax.model.layers import rotary_tables  # noqa: E402

SHARED = os.environ.get("CAMEL_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
GGUF = os.path.join(SHARED, "data", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def all_logits(weights, tokens, cfg):
    """fp32 logits [T, vocab] at every position of one unpadded sequence, through decode's own layer and head."""
    t = tokens.shape[1]
    slots = jnp.arange(t, dtype=jnp.int32)[None]
    seg = jnp.ones((1, t), jnp.int32)
    mask = attention_mask(slots, seg, slots, seg)
    x = decode._embed(weights, tokens, cfg)
    cos, sin = rotary_tables(slots, cfg.dim_per_head, cfg.rope_theta)
    for w in weights["layers"]:
        x, _ = decode._block(w, x, cos, sin, lambda q, k, v: (dot_attention(q, k, v, mask), None), cfg)
    return decode._logits(weights, decode._rms(x[0], weights["final_norm"], cfg), cfg)[:, :cfg.vocab_size]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=GGUF)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    import transformers

    cfg, params, model = gguf_model(args.gguf)
    del model
    folder, name = os.path.split(args.gguf)
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with open(os.path.join(SHARED, "data", "alpaca_eval", "alpaca_eval.jsonl"), encoding="utf-8") as f:
        instructions = [json.loads(line)["instruction"] for _, line in zip(range(args.prompts), f)]
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": i}], add_generation_prompt=True,
                                           tokenize=False), add_special_tokens=False).input_ids for i in instructions]
    max_len = -(-(max(len(p) for p in prompts) + args.new) // 128) * 128
    engines = {"fp32": Engine(params, cfg, max_len=max_len, eos_id=tok.eos_token_id),
               "int8": Engine(params, cfg, max_len=max_len, eos_id=tok.eos_token_id, quantize="int8"),
               "bf16": Engine(params, cfg.replace(dtype="bfloat16"), max_len=max_len, eos_id=tok.eos_token_id)}
    sizes = {k: weight_bytes(e.weights) for k, e in engines.items()}
    print(f"{args.gguf}: weights fp32 {sizes['fp32'] / 2**20:.1f} MiB, int8 {sizes['int8'] / 2**20:.1f} MiB "
          f"({sizes['int8'] / sizes['fp32']:.3f}x), bf16 {sizes['bf16'] / 2**20:.1f} MiB")

    answers = {k: [o[0].tokens for o in engines[k].run([Request(p, args.new) for p in prompts])]
               for k in ("fp32", "int8")}
    same = sum(a == b for a, b in zip(answers["fp32"], answers["int8"]))
    first = [next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
             for a, b in zip(answers["fp32"], answers["int8"]) if a != b]
    print(f"  greedy answers (EOS or {args.new} tokens): int8 identical to fp32 on {same}/{len(prompts)} prompts; "
          f"the others first differ at tokens {first} (fp32 answer lengths {[len(a) for a in answers['fp32']]})")
    fwd = {k: jax.jit(lambda w, t, cfg=e.cfg: all_logits(w, t, cfg)) for k, e in engines.items()}
    err = {k: [] for k in ("int8", "bf16")}
    for p, a in zip(prompts, answers["fp32"]):
        seq = jnp.asarray([p + a], jnp.int32)
        ref = np.asarray(fwd["fp32"](engines["fp32"].weights, seq))[len(p) - 1:]  # the answer's positions
        for k in err:
            got = np.asarray(fwd[k](engines[k].weights, seq))[len(p) - 1:]
            err[k].append((np.abs(got - ref).max(), np.abs(got - ref).mean(), np.mean(got.argmax(-1) ==
                                                                                    ref.argmax(-1)), len(ref)))
    for k, rows in err.items():
        rows = np.asarray(rows)
        print(f"  {k} logits vs fp32 over {int(rows[:, 3].sum())} answer positions: max |diff| {rows[:, 0].max():.4f},"
              f" mean |diff| {np.average(rows[:, 1], weights=rows[:, 3]):.5f}, argmax equal "
              f"{np.average(rows[:, 2], weights=rows[:, 3]):.4f}")

    reqs = [Request(p, args.new, ignore_eos=True) for p in prompts]
    times = {"fp32": [], "int8": []}
    for _ in range(args.reps):  # in turn: the shared machine's load hits both alike
        for k in times:
            t0 = time.perf_counter()
            engines[k].run(reqs)
            times[k].append(time.perf_counter() - t0)
    n_tok = len(reqs) * args.new
    t32, t8 = statistics.median(times["fp32"]), statistics.median(times["int8"])
    print(f"  engine, {len(reqs)} prompts x {args.new} forced tokens, 8 slots: fp32 {n_tok / t32:.1f} tok/s, int8 "
          f"{n_tok / t8:.1f} tok/s (int8/fp32 {t32 / t8:.2f}x; medians of {args.reps})")
    for k in times:
        e = engines[k]
        for r in reqs:
            e.submit(r)
        e._fill()

        def step(e=e):
            e.cache, e.state, t, *_ = e._step(e.weights, e.cache, e.state, window=e.max_len)
            jax.block_until_ready(t)
        step()
        times[k] = median_time(step, 20)
    print(f"  decode step (8 slots, window {max_len}): fp32 {times['fp32'] * 1e3:.1f} ms, int8 "
          f"{times['int8'] * 1e3:.1f} ms (medians of 20)")


if __name__ == "__main__":
    main()
