"""Greedy decoding throughput: camel_jax's engine vs transformers `generate` on the same weights, one run.

Both sides get the same prompts (random ids, equal lengths, so no padding on either side), decode exactly
`--new` tokens greedily in fp32 (EOS ignored), and their tokens are compared. Also printed: the engine's decode
step alone against that step's weight matmuls alone (every projection of every layer and the head, at the slot
batch, jitted by XLA): the physical floor of a step on this machine. `--hf_compiled` adds transformers' own
fastest path, its static cache with the forward under `torch.compile` (timed after its compiling first call).

    python scripts/bench_engine.py [--preset bench-58m | --gguf ../shared/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--prompts 8] [--prompt_len 256] [--new 128] [--reps 3] [--mixed] [--hf_compiled]
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

from camel_jax.convert import hf  # noqa: E402
from camel_jax.infer import decode  # noqa: E402
from camel_jax.infer.engine import Engine, Request  # noqa: E402
from camel_jax.model.config import get_preset  # noqa: E402
from camel_jax.model.llama import init_params  # noqa: E402


def gguf_model(path: str):
    """(cfg, our params, the transformers model) from a GGUF file, dequantized to fp32 by transformers (the other
    benchmark scripts load SmolLM2 through this too)."""
    import torch
    import transformers

    folder, name = os.path.split(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    cfg = hf.config_from_hf(model.config.to_dict()).replace(dtype="float32", param_dtype="float32")
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)
    return cfg, hf.params_from_hf_state_dict(sd, cfg), model.eval()


def models(args):
    """(cfg, our params, the transformers model) holding the same weights: a random preset, or a GGUF file
    (dequantized to fp32 by transformers, e.g. ../shared/data/smollm2)."""
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    if args.gguf:
        return gguf_model(args.gguf)
    cfg = get_preset(args.preset, dtype="float32", param_dtype="float32")
    params = jax.tree.map(np.asarray, jax.jit(lambda k: init_params(cfg, k))(jax.random.PRNGKey(0)))
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf.hf_config_dict(cfg))).float().eval()
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hf.hf_state_dict_from_params(params, cfg).items()}
    model.load_state_dict(sd, strict=False)
    return cfg, params, model


def hf_generate(model, prompts, new):
    import torch

    ids = torch.from_numpy(np.asarray(prompts)).long()
    # No EOS: exactly `new` tokens, each the argmax (min_new_tokens would instead forbid EOS, changing the tokens).
    model.generation_config.eos_token_id = None

    def run(n=new):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 do_sample=False, pad_token_id=0)
        return out[:, ids.shape[1]:].tolist()
    return run


def hf_compiled(model, prompts, new):
    """transformers' fastest documented path: its static KV cache with the forward under `torch.compile` (fullgraph),
    on a copy of the model so the eager side stays eager. Returns (seconds of the first, compiling call, run)."""
    import copy

    import torch

    fast = copy.deepcopy(model)
    fast.generation_config.cache_implementation = "static"
    fast.forward = torch.compile(fast.forward, fullgraph=True)
    run = hf_generate(fast, prompts, new)
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0, run


def matmul_floor(cfg, weights, batch):
    """The step's weight matmuls alone, in the step's order: per layer x @ q/k/v, (the q output as the attention
    output) @ o, x @ gate/up, (the gate output) @ down, then the head, each output kept (returned), no other work.
    Chained, not independent: XLA:CPU runs independent ops concurrently, which a step cannot. Not summed: XLA fuses a
    reduction into the dot (a YNNPACK dot+reduce fusion, partly rewritten as reduce-windows) and then times something
    other than a matmul (that was this floor before, slower than the whole step under load)."""
    dt = jnp.dtype(cfg.dtype)
    layers = [{name: w["kernel"] for part in ("attn", "mlp") for name, w in layer[part].items()}
              for layer in weights["layers"]]
    head = weights["head"] if weights["head"] is not None else jnp.asarray(weights["embed"]).T

    @jax.jit
    def f(layers, head, x):
        kept = []
        for w in layers:
            q, k, v = x @ w["q"], x @ w["k"], x @ w["v"]
            x = q @ w["o"]
            g, u = x @ w["gate"], x @ w["up"]
            x = g @ w["down"]
            kept += [k, v, u]
        return x @ head, kept
    x = jnp.ones((batch, cfg.hidden_size), dt)
    return lambda: jax.block_until_ready(f(layers, head, x))


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mixed(cfg, params, args):
    """64 requests whose answers end at different lengths (16-256 tokens, forced), through the engine at 8 slots
    continuously refilled, against the same engine fed static batches of 8 (each batch held by its longest)."""
    rng = np.random.RandomState(1)
    reqs = [Request(rng.randint(3, cfg.vocab_size, rng.randint(16, 128)).tolist(), int(rng.randint(16, 257)),
                    ignore_eos=True) for _ in range(64)]
    n_tok = sum(r.max_new_tokens for r in reqs)
    engine = Engine(params, cfg, slots=8, max_len=384)
    engine.run(reqs[:8])  # compiles most shapes

    def static():
        for i in range(0, len(reqs), 8):
            engine.run(reqs[i:i + 8])
    t_cont = median_time(lambda: engine.run(reqs), 1)
    t_static = median_time(static, 1)
    print(f"64 requests, answers of 16-256 tokens ({n_tok} in all), 8 slots: continuous {n_tok / t_cont:.1f} tok/s "
          f"({t_cont:.1f} s), static batches of 8 {n_tok / t_static:.1f} tok/s ({t_static:.1f} s), "
          f"ratio {t_static / t_cont:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--gguf", help="a GGUF model file instead of a random preset")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt_len", type=int, default=256)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mixed", action="store_true", help="instead: continuous against static batching (above)")
    ap.add_argument("--hf_compiled", action="store_true",
                    help="also transformers with its static cache and torch.compile (minutes of compiling on CPU)")
    args = ap.parse_args()
    cfg, params, model = models(args)
    if args.mixed:
        return mixed(cfg, params, args)
    prompts = np.random.RandomState(0).randint(3, cfg.vocab_size, (args.prompts, args.prompt_len)).tolist()
    n_tok = args.prompts * args.new

    theirs_fn = hf_generate(model, prompts, args.new)
    theirs_fn(4)
    compiled = hf_compiled(model, prompts, args.new) if args.hf_compiled else None
    max_len = -(-(args.prompt_len + args.new) // 128) * 128
    engine = Engine(params, cfg, slots=args.prompts, max_len=max_len)
    reqs = [Request(p, args.new, ignore_eos=True) for p in prompts]
    engine.run(reqs)  # compiles
    # Whole runs in turn, the best of `reps` each: on a shared machine the other load hits both sides alike.
    t_hf, t_engine, t_compiled = [], [], []
    for _ in range(args.reps):
        t_hf.append(median_time(theirs_fn, 1))
        t_engine.append(median_time(lambda: engine.run(reqs), 1))
        if compiled:
            t_compiled.append(median_time(compiled[1], 1))
    t_hf, t_engine = min(t_hf), min(t_engine)
    theirs = theirs_fn()
    ours = [r[0].tokens for r in engine.run()[-args.prompts:]]

    same = sum(a == b for a, b in zip(ours, theirs))
    print(f"{args.gguf or args.preset}, fp32, {args.prompts} prompts x {args.prompt_len} tokens, {args.new} new tokens, greedy")
    print(f"  transformers generate: {n_tok / t_hf:8.1f} tok/s ({t_hf:.2f} s)")
    print(f"  camel_jax engine:      {n_tok / t_engine:8.1f} tok/s ({t_engine:.2f} s)  ratio {t_hf / t_engine:.2f}x")
    print(f"  identical outputs: {same}/{args.prompts} rows")
    if compiled:
        t_c = min(t_compiled)
        print(f"  transformers static cache + torch.compile: {n_tok / t_c:8.1f} tok/s ({t_c:.2f} s; its first call "
              f"compiling {compiled[0]:.1f} s)  camel_jax ratio {t_c / t_engine:.2f}x; identical outputs: "
              f"{sum(a == b for a, b in zip(ours, compiled[1]()))}/{args.prompts} rows")

    # The decode step alone, all slots active, against its weight matmuls alone.
    for r in reqs:
        engine.submit(Request(r.prompt, args.new, ignore_eos=True))
    engine._fill()
    window = decode.window_for(engine.blocks, min(max_len, args.prompt_len + args.new // 2))

    def step():
        engine.cache, engine.state, tok, *_ = engine._step(engine.weights, engine.cache, engine.state,
                                                           window=window)
        jax.block_until_ready(tok)
    floor = matmul_floor(cfg, engine.weights, args.prompts)
    step(), floor()
    t_step, t_floor = median_time(step, 20), median_time(floor, 20)
    print(f"  decode step (batch {args.prompts}, window {window}): {t_step * 1e3:.2f} ms; its weight matmuls "
          f"alone: {t_floor * 1e3:.2f} ms; ratio {t_step / t_floor:.2f}x")


if __name__ == "__main__":
    main()
