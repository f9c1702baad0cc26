"""Forward+backward+AdamW training throughput: camel_jax vs transformers' PyTorch LlamaForCausalLM, one run.

Same preset (default bench-58m), same batch (4 x 512 tokens), fp32 everywhere, AdamW on both sides, all CPU threads
to both. Prints per-step medians, tokens/s and the ratio camel_jax / PyTorch.

    python scripts/bench_model.py [--preset bench-58m] [--batch 4] [--seq 512] [--steps 10] [--warmup 3]
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
import optax  # noqa: E402

from camel_jax.convert import hf  # noqa: E402
from camel_jax.model import Llama, init_params  # noqa: E402
from camel_jax.model_config import get_preset  # noqa: E402
from camel_jax.train.loss import token_nll_sums  # noqa: E402


def time_interleaved(steps: dict, n_warmup: int, n_steps: int) -> dict:
    """Median seconds per step of each contender, timed in alternation so both see the same machine load."""
    for step in steps.values():
        for _ in range(n_warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(n_steps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_jax(cfg, tokens, args):
    params = init_params(cfg, jax.random.PRNGKey(0))
    opt = optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    state = [params, opt.init(params)]
    inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])

    mask = jnp.ones(targets.shape, jnp.float32)

    def loss_fn(p):  # the training loss: masked token cross-entropy over fp32 logits
        logits, _ = Llama(cfg).apply({"params": p}, inputs)
        total, n = token_nll_sums(logits, targets, mask)
        return total / n

    def train_step(p, o):
        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, o = opt.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))

    def step():
        state[0], state[1], loss = train_step(*state)
        loss.block_until_ready()

    return step


def bench_torch(cfg, tokens, args):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    conf = transformers.LlamaConfig(**hf.hf_config_dict(cfg))
    model = transformers.LlamaForCausalLM(conf).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ids = torch.from_numpy(tokens).long()

    def step():
        out = model(input_ids=ids[:, :-1], labels=ids[:, :-1].clone())
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    cfg = get_preset(args.preset, dtype="float32", param_dtype="float32")
    tokens = np.random.RandomState(0).randint(3, cfg.vocab_size, (args.batch, args.seq + 1)).astype(np.int32)
    n_tok = args.batch * args.seq
    print(f"preset {args.preset} ({cfg.num_params() / 1e6:.1f}M params), batch {args.batch} x {args.seq}, fp32, "
          f"{os.cpu_count()} CPU threads, median of {args.steps} steps each, timed in alternation, after {args.warmup} warm-up")
    med = time_interleaved({"pytorch": bench_torch(cfg, tokens, args), "camel_jax": bench_jax(cfg, tokens, args)},
                           args.warmup, args.steps)
    t_torch, t_jax = med["pytorch"], med["camel_jax"]
    print(f"pytorch   : {t_torch * 1e3:8.1f} ms/step  {n_tok / t_torch:9.0f} tokens/s")
    print(f"camel_jax : {t_jax * 1e3:8.1f} ms/step  {n_tok / t_jax:9.0f} tokens/s")
    print(f"ratio camel_jax/pytorch tokens/s: {t_torch / t_jax:.2f}x")


if __name__ == "__main__":
    main()
