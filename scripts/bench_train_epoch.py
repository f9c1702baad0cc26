"""Time to train one epoch: camel_jax (packing on) vs an open-instruct-style PyTorch loop, same examples, one run.

Both sides get the same real examples (the bundled TÜLU-mix sample, a seeded subsample by default to stay within
minutes on 2 CPU cores), the same tokenization and loss masks (camel_jax.data.chat_format, open-instruct's exact
encoding), max length 1024, preset bench-58m in fp32, AdamW + linear schedule + clip 1.0, and the same global batch
(`--batch` examples per optimizer step):
  * PyTorch (open-instruct finetune.py): transformers LlamaForCausalLM, seeded shuffle, each global batch split in
    micro-batches of `--micro` examples padded to their longest (DataCollatorForSeq2Seq per device batch), labels
    -100 off the mask, HF mean loss per micro-batch averaged over the accumulation steps.
  * camel_jax: the training pipeline (TrainData, packing on: several examples per 1024-token row with segment ids)
    and the jitted train step (token reduction); the global batch is the number of packed rows that holds `--batch`
    examples on average, so both sides take about the same number of optimizer steps per epoch.
Both epochs run in one process, step by step in alternation (PyTorch step, camel_jax step, ...), so the load of a
shared machine falls on both alike. Compilation is timed apart (AOT, before the epoch) and reported; the ratio is
PyTorch epoch time / camel_jax epoch time (compile excluded, and also shown included). One epoch each.

    python scripts/bench_train_epoch.py [--examples 128] [--batch 32] [--micro 8] [--max_len 1024]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

TOKENIZER = "/work/shared/data/llama_tokenizer"


def load_examples(args, tokenizer):
    from camel_jax.data.mixtures import SAMPLE_MIXTURE
    from camel_jax.data.pipeline import mixture_records

    records = mixture_records(args.data or SAMPLE_MIXTURE)
    n_all = len(records)
    if args.examples and args.examples < n_all:
        keep = np.sort(np.random.default_rng(args.seed).choice(n_all, size=args.examples, replace=False))
        records = [records[i] for i in keep]
    return records, n_all


def torch_steps(cfg, examples, args):
    """open-instruct's loop: shuffle, micro-batches of `micro` examples padded to their longest (what
    DataCollatorForSeq2Seq does per device batch), HF mean loss per micro-batch averaged over the accumulation
    steps of one global batch, clip 1.0, AdamW, linear schedule. Yields (seconds, token slots, loss) per step."""
    import torch
    import transformers

    from camel_jax.convert import hf

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count())
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf.hf_config_dict(cfg))).float().train()
    steps = -(-len(examples) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    warm = int(steps * 0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    order = np.random.default_rng(args.seed).permutation(len(examples))
    for i in range(steps):
        t0 = time.perf_counter()
        step_ids = order[i * args.batch:(i + 1) * args.batch]
        micro = [step_ids[j:j + args.micro] for j in range(0, len(step_ids), args.micro)]
        slots, loss = 0, 0.0
        for mb in micro:
            batch = [examples[j] for j in mb]
            longest = max(len(ids) for ids, _ in batch)
            ids = np.zeros((len(batch), longest), np.int64)
            labels = np.full((len(batch), longest), -100, np.int64)
            attn = np.zeros((len(batch), longest), np.int64)
            for r, (x, m) in enumerate(batch):
                ids[r, :len(x)], attn[r, :len(x)] = x, 1
                labels[r, :len(x)] = np.where(m == 1, x, -100)
            slots += ids.size
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(attn),
                        labels=torch.from_numpy(labels))
            (out.loss / len(micro)).backward()
            loss += out.loss.item() / len(micro)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        yield time.perf_counter() - t0, slots, loss


def jax_steps(cfg, records, tokenizer, args, info):
    """camel_jax: packed TrainData + the jitted train step, compiled ahead (time in info['compile_s']).
    Yields (seconds, real tokens, loss) per step."""
    import jax

    from camel_jax.data.pipeline import TrainData
    from camel_jax.model.mesh import build_mesh
    from camel_jax.train.loop import _stack
    from camel_jax.train.optimizer import make_optimizer
    from camel_jax.train.state import init_train_state, state_shardings
    from camel_jax.train.step import make_train_step

    # Same examples per optimizer step on average: a global batch of `batch` examples is this many packed rows.
    probe = TrainData(records, tokenizer, max_seq_length=args.max_len, batch_size=1, packing=True, seed=args.seed)
    rows = max(1, round(args.batch * probe.num_rows / probe.num_examples))
    data = TrainData(records, tokenizer, max_seq_length=args.max_len, batch_size=rows, packing=True,
                     seed=args.seed)
    print(f"camel_jax data: {data.describe()}")
    mesh = build_mesh("", cfg, batch=rows)
    optimizer = make_optimizer(args.lr, data.steps_per_epoch, 0.03)
    shardings = state_shardings(cfg, optimizer, mesh)
    state = init_train_state(cfg, optimizer, jax.random.PRNGKey(args.seed), shardings=shardings)
    step = make_train_step(cfg, optimizer, mesh, 1, "token", loss_chunk=args.loss_chunk)
    it = data.iterator(num_epochs=1)
    batch = _stack(next(it), 1)
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = step.jitted.lower(state, batch).compile()
    info["compile_s"] = time.perf_counter() - t0
    for i in range(data.steps_per_epoch):
        t0 = time.perf_counter()
        if i:
            batch = _stack(next(it), 1)
        with jax.set_mesh(mesh):
            state, m = compiled(state, batch)
        loss = float(m["loss"])
        yield time.perf_counter() - t0, int((batch["segment_ids"] != 0).sum()), loss
    it.close()


def alternate(**runs):
    """Step every run in turn until all are done, so machine load (a shared machine) hits both sides alike.
    Returns {name: (total seconds, steps, token count, losses)}."""
    out = {k: [0.0, 0, 0, []] for k in runs}
    live = dict(runs)
    while live:
        for name in list(live):
            try:
                dt, n, loss = next(live[name])
            except StopIteration:
                del live[name]
                continue
            r = out[name]
            r[0] += dt
            r[1] += 1
            r[2] += n
            r[3].append(loss)
    return {k: tuple(v) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench-58m")
    ap.add_argument("--data", default="", help="unified .jsonl (default: the bundled TÜLU-mix sample)")
    ap.add_argument("--tokenizer", default=TOKENIZER)
    ap.add_argument("--examples", type=int, default=128, help="seeded subsample size (0: all)")
    ap.add_argument("--batch", type=int, default=32, help="global batch in examples (camel_jax: the packed rows "
                    "holding as many examples on average)")
    ap.add_argument("--micro", type=int, default=8, help="PyTorch per-device micro-batch (padded to its longest)")
    ap.add_argument("--max_len", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scan_unroll", type=int, default=0, help="camel_jax layers per scan step (0: all, unrolled)")
    ap.add_argument("--loss_chunk", type=int, default=64, help="camel_jax fused loss chunk, slots per row (0: full logits)")
    args = ap.parse_args()

    from camel_jax.data.pipeline import tokenize_records
    from camel_jax.model.config import get_preset
    from camel_jax.model.tokenizer import load_tokenizer

    cfg = get_preset(args.preset, dtype="float32", param_dtype="float32", max_seq_len=max(2048, args.max_len))
    cfg = cfg.replace(scan_unroll=args.scan_unroll or cfg.num_layers).validate()
    tokenizer = load_tokenizer(args.tokenizer)
    records, n_all = load_examples(args, tokenizer)
    ex, _, _, drops = tokenize_records(records, tokenizer, args.max_len)
    examples = [(ex.tokens[a:b], ex.masks[a:b]) for a, b in zip(ex.offsets[:-1], ex.offsets[1:])]
    n_tok = sum(len(x) for x, _ in examples)
    print(f"{len(records)} of {n_all} records -> {len(examples)} examples ({drops.summary()} dropped), "
          f"{n_tok:,} tokens, max length {args.max_len}; preset {args.preset} ({cfg.num_params() / 1e6:.1f}M), "
          f"fp32, global batch {args.batch} examples (PyTorch micro-batch {args.micro}), {os.cpu_count()} CPU threads; "
          f"camel_jax scan_unroll {cfg.scan_unroll}, loss_chunk {args.loss_chunk}")
    info = {}
    res = alternate(torch=torch_steps(cfg, examples, args), jax=jax_steps(cfg, records, tokenizer, args, info))
    t_torch, s_torch, tok_torch, l_torch = res["torch"]
    t_jax, s_jax, tok_jax, l_jax = res["jax"]
    c_jax = info["compile_s"]
    print(f"pytorch (pad to longest) : {t_torch:8.1f} s/epoch, {s_torch} steps, {tok_torch:,} token slots "
          f"({100 * n_tok / tok_torch:.0f}% real), {n_tok / t_torch:7.0f} real tokens/s, "
          f"mean loss {np.mean(l_torch):.3f}")
    print(f"camel_jax (packed)       : {t_jax:8.1f} s/epoch, {s_jax} steps, {tok_jax:,} real tokens, "
          f"{tok_jax / t_jax:7.0f} real tokens/s, mean loss {np.mean(l_jax):.3f}; compile {c_jax:.1f} s")
    print(f"ratio epoch time pytorch/camel_jax: {t_torch / t_jax:.2f}x (compile excluded), "
          f"{t_torch / (t_jax + c_jax):.2f}x (compile included)")


if __name__ == "__main__":
    main()
