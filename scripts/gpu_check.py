"""The GPU path, checked on whatever GPU is here (`bash scripts/gpu_check.sh` runs this; it skips without a GPU).

1. Training, GPU against CPU: the embedded default run (real stories260K weights, the bundled TÜLU-mix sample,
   packed 512-token rows) for --steps optimizer steps in bf16 compute, once with JAX_PLATFORMS=cpu and once on the
   GPU, where train.attention=auto picks cuDNN. Each step's loss must agree within --rtol (bf16 rounding, another
   attention kernel and reduction order; the same weights, data order and optimizer). Shown: the attention each side
   ran, the GPU's tokens/s and MFU (median of steps 2..N; step 1 compiles). stories260K is far too small for a
   meaningful MFU, hence 2.
2. Throughput (only with --tokenizer, a tokenizer folder matching --model's vocabulary, e.g. LLaMA's): --model
   (default bench-58m) from random init on the GPU, packed rows of --seq tokens: tokens/s and MFU.
3. Decoding: the GPU run's checkpoint through the inference engine, greedy in fp32 (so block-sparse prefill, not
   cuDNN), --prompts fixed 24-token prompts × --new tokens (EOS ignored), on CPU and GPU: tokens/s once compiled
   (the second run), and how many rows decode the same tokens on both (reported; near-ties may differ).

    bash scripts/gpu_check.sh [--steps 20] [--rtol 0.02] [--model bench-58m --tokenizer DIR --seq 2048]
        [--prompts 8] [--new 64]

Exit status: 0 all checks passed, 1 a check failed. GPU_CHECK_PLATFORM=cpu runs the "GPU" side on the CPU: a
self-test of this script on a machine without a GPU (the attention is then block_sparse on both sides).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _env(platform: str) -> dict:
    return dict(os.environ, JAX_PLATFORMS=platform, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def train(platform: str, out: pathlib.Path, steps: int, extra: tuple = ()) -> tuple[list[dict], str]:
    """One `camel_jax.train` run -> (its per-step metrics records, the attention its start-up line names)."""
    cmd = [sys.executable, "-m", "camel_jax.train", f"--output_dir={out}", "--noprogress",
           f"--config.train.max_steps={steps}", "--config.train.dtype=bfloat16", "--config.sample.enabled=False",
           *extra]
    r = subprocess.run(cmd, env=_env(platform), cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"gpu_check: the {platform} training run failed ({r.returncode}):\n{r.stdout[-2000:]}\n"
                 f"{r.stderr[-4000:]}")
    found = re.search(r"params, .*?, (\S+) attention\)", r.stdout)
    with open(out / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()], found.group(1) if found else "?"


def speed(recs: list[dict]) -> tuple[float, float | None]:
    """Median tokens/s and MFU over the steps after the first (which includes compilation)."""
    later = recs[1:] or recs
    mfu = [r["mfu"] for r in later if r.get("mfu") is not None]
    return statistics.median(r["tokens_per_s"] for r in later), statistics.median(mfu) if mfu else None


def decode_child(ckpt: str, prompts: list[list[int]], new: int) -> None:
    """Run in a child process with JAX_PLATFORMS set: prints one JSON line {tokens, tok_s, device}."""
    import jax

    from camel_jax import params_io
    from camel_jax.infer.engine import Engine, Request

    params, cfg = params_io.load_params(ckpt)
    cfg = cfg.replace(dtype="float32")
    engine = Engine(params, cfg, slots=len(prompts), max_len=-(-(max(map(len, prompts)) + new) // 128) * 128)
    reqs = [Request(p, new, ignore_eos=True) for p in prompts]
    engine.run(reqs)  # compiles
    t0 = time.perf_counter()
    outs = engine.run(reqs)[-len(prompts):]
    dt = time.perf_counter() - t0
    print(json.dumps({"tokens": [o[0].tokens for o in outs], "tok_s": len(prompts) * new / dt,
                      "device": jax.devices()[0].device_kind}))


def decode(platform: str, ckpt: pathlib.Path, prompts: list[list[int]], new: int) -> dict:
    cmd = [sys.executable, __file__, "--_decode", str(ckpt), "--new", str(new), "--_prompts", json.dumps(prompts)]
    r = subprocess.run(cmd, env=_env(platform), cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"gpu_check: decoding on {platform} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rtol", type=float, default=0.02, help="per-step loss agreement, relative")
    ap.add_argument("--model", default="bench-58m")
    ap.add_argument("--tokenizer", help="tokenizer folder for the throughput run (part 2); without it, no part 2")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--_decode", help=argparse.SUPPRESS)
    ap.add_argument("--_prompts", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._decode:
        decode_child(args._decode, json.loads(args._prompts), args.new)
        return 0
    gpu = os.environ.get("GPU_CHECK_PLATFORM", "cuda")
    ok = True
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = pathlib.Path(tmp)
        print(f"1. training: embedded default (stories260K), {args.steps} steps, bf16 compute, cpu vs {gpu}")
        cpu_recs, cpu_att = train("cpu", tmp / "cpu", args.steps)
        gpu_recs, gpu_att = train(gpu, tmp / "gpu", args.steps)
        worst = max(abs(g["loss"] - c["loss"]) / abs(c["loss"]) for c, g in zip(cpu_recs, gpu_recs))
        same_len = len(cpu_recs) == len(gpu_recs) == args.steps
        passed = same_len and worst <= args.rtol
        ok &= passed
        tps, mfu = speed(gpu_recs)
        print(f"   attention: cpu {cpu_att}, {gpu} {gpu_att}")
        print(f"   losses: cpu {cpu_recs[0]['loss']:.4f} -> {cpu_recs[-1]['loss']:.4f}, {gpu} {gpu_recs[0]['loss']:.4f}"
              f" -> {gpu_recs[-1]['loss']:.4f}; largest relative difference {worst:.2e} (rtol {args.rtol:g}): "
              f"{'PASS' if passed else 'FAIL'}")
        print(f"   {gpu}: {tps:,.0f} tokens/s, MFU {'n/a' if mfu is None else f'{100 * mfu:.2f}%'} "
              f"(cpu: {speed(cpu_recs)[0]:,.0f} tokens/s)")
        if args.tokenizer:
            print(f"2. throughput: {args.model} random init, {args.batch} packed rows x {args.seq} tokens, {gpu}")
            recs, att = train(gpu, tmp / "throughput", max(args.steps, 5),
                              (f"--config.model={args.model}", "--config.init_from=",
                               f"--config.data.tokenizer={args.tokenizer}", f"--config.data.max_seq_length={args.seq}",
                               f"--config.train.batch_size={args.batch}", "--config.train.lr=1e-4"))
            tps, mfu = speed(recs)
            print(f"   {att} attention: {tps:,.0f} tokens/s, MFU {'n/a' if mfu is None else f'{100 * mfu:.1f}%'}")
        else:
            print("2. throughput: skipped (give --tokenizer DIR with --model's vocabulary)")
        print(f"3. decoding: {args.prompts} prompts x {args.new} new tokens, greedy fp32, the {gpu} run's weights")
        prompts = [[1] + [3 + (7 * i + 13 * j) % 500 for j in range(23)] for i in range(args.prompts)]
        c, g = decode("cpu", tmp / "gpu", prompts, args.new), decode(gpu, tmp / "gpu", prompts, args.new)
        same = sum(a == b for a, b in zip(c["tokens"], g["tokens"]))
        print(f"   {g['device']}: {g['tok_s']:,.0f} tok/s (cpu {c['tok_s']:,.0f}); identical rows {same}/{args.prompts}")
    print("gpu_check: " + ("all checks passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
