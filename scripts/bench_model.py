"""Forward+backward+AdamW training throughput: camel_jax vs transformers' PyTorch LlamaForCausalLM, one run.

Same preset (default bench-58m), same batch (4 x 512 tokens), fp32 everywhere, AdamW on both sides, all CPU threads
to both. camel_jax runs twice: with the layer scan (the default, compile time flat in depth) and fully unrolled
(`scan_unroll` = layers, faster on CPU). Prints per-step medians, tokens/s and the ratios camel_jax / PyTorch.

`--bounds` adds what bounds the ratio: camel_jax's step with the attention core replaced by an elementwise stand-in
(not a model: the time of everything but attention), and the AdamW update alone on each side. With
scripts/bench_matmul.py (the dense matmuls alone) they show where the remaining gap is.

    python scripts/bench_model.py [--preset bench-58m] [--batch 4] [--seq 512] [--steps 10] [--warmup 3] [--bounds]
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
from camel_jax.model.llama import Llama, head_kernel, init_params  # noqa: E402
from camel_jax.model.config import get_preset  # noqa: E402
from camel_jax.train.head_loss import head_nll_sum  # noqa: E402
from camel_jax.train.step import DEFAULT_LOSS_CHUNK  # noqa: E402


def _optax_adamw():
    return optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)


def _torch_adamw(model):  # the same hyperparameters as _optax_adamw
    import torch

    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


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


def bench_jax(cfg, tokens, args, skip_attention=False):
    params = init_params(cfg, jax.random.PRNGKey(0))
    opt = _optax_adamw()
    state = [params, opt.init(params)]
    inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])

    mask = jnp.ones(targets.shape, jnp.float32)

    def loss_fn(p):  # the train step's loss: masked token cross-entropy, fused with the output projection
        hidden, _ = Llama(cfg).apply({"params": p}, inputs, head=False)
        return head_nll_sum(hidden, head_kernel(p, cfg), targets, mask, DEFAULT_LOSS_CHUNK) / jnp.sum(mask)

    def train_step(p, o):
        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, o = opt.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss

    if skip_attention:  # trace with the attention core swapped out; the swap is undone before anything else runs
        from camel_jax.model import layers
        real = layers.block_sparse_attention
        layers.block_sparse_attention = lambda q, k, v, mask, starts: q * v + k
        try:
            train_step = jax.jit(train_step, donate_argnums=(0, 1)).lower(*state).compile()
        finally:
            layers.block_sparse_attention = real
    else:
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
    opt = _torch_adamw(model)
    ids = torch.from_numpy(tokens).long()

    def step():
        out = model(input_ids=ids[:, :-1], labels=ids[:, :-1].clone())
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def adamw_update_steps(cfg):
    """The optimizer update alone (gradients given), optax.adamw vs torch.optim.AdamW, same parameters."""
    import torch
    import transformers

    params = init_params(cfg, jax.random.PRNGKey(0))
    opt = _optax_adamw()
    grads = jax.tree.map(lambda x: x * 1e-3, params)
    state = [params, opt.init(params)]

    def update(p, o, g):
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o

    update = jax.jit(update, donate_argnums=(0, 1))

    def jax_step():
        state[0], state[1] = update(state[0], state[1], grads)
        jax.block_until_ready(state[0])

    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf.hf_config_dict(cfg))).float()
    topt = _torch_adamw(model)
    for q in model.parameters():
        q.grad = torch.randn_like(q) * 1e-3
    return {"pytorch AdamW update": topt.step, "camel_jax AdamW update": jax_step}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bounds", action="store_true", help="also time the step without attention, and AdamW alone")
    args = ap.parse_args()
    cfg = get_preset(args.preset, dtype="float32", param_dtype="float32")
    tokens = np.random.RandomState(0).randint(3, cfg.vocab_size, (args.batch, args.seq + 1)).astype(np.int32)
    n_tok = args.batch * args.seq
    print(f"preset {args.preset} ({cfg.num_params() / 1e6:.1f}M params), batch {args.batch} x {args.seq}, fp32, "
          f"{os.cpu_count()} CPU threads, median of {args.steps} steps each, timed in alternation, after {args.warmup} warm-up")
    unrolled = cfg.replace(scan_unroll=cfg.num_layers)
    contenders = {"pytorch": bench_torch(cfg, tokens, args),
                  "camel_jax (scan_unroll 1)": bench_jax(cfg, tokens, args),
                  f"camel_jax (scan_unroll {cfg.num_layers})": bench_jax(unrolled, tokens, args)}
    if args.bounds:
        contenders["camel_jax unrolled, no attention (bound)"] = bench_jax(unrolled, tokens, args, skip_attention=True)
    med = time_interleaved(contenders, args.warmup, args.steps)
    t_torch = med["pytorch"]
    for name, t in med.items():
        ratio = "" if name == "pytorch" else f"  ratio camel_jax/pytorch tokens/s: {t_torch / t:.2f}x"
        print(f"{name:40s}: {t * 1e3:8.1f} ms/step  {n_tok / t:7.0f} tokens/s{ratio}")
    if args.bounds:
        for name, t in time_interleaved(adamw_update_steps(cfg), args.warmup, 3 * args.steps).items():
            print(f"{name:40s}: {t * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
