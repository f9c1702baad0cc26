"""The evaluation suite's wall time: `python -m camel_jax.evaluate` against the open-instruct way, one run each.

Both sides evaluate SmolLM2-135M-Instruct (../shared/data/smollm2, the GGUF dequantized to fp32, the very same
weights) on CPU over the same tasks and items (`--max_examples` per task) and the same prompts: the prompt strings
camel_jax wrote in its predictions, under `--protocol paper` by default (the June-2023 behaviour the peer
reproduces). The peer is open-instruct's June-2023 loop (open_instruct.md §4.0) on transformers: the prompt ids
camel_jax fed (no BOS but AlpacaFarm's), left padding, the paper jobs' batch sizes (MMLU 4, GSM 20, BBH 10,
TydiQA 20, Codex 32, AlpacaFarm 8); MMLU one forward per batch, the choices' next-token log-probs; the rest
`model.generate`, greedy or Codex's sampling (n passes over the prompts), decoding to EOS or max_new_tokens (the
June stopping criteria never fired) and truncating at the stop strings afterwards. `--protocol fixed` runs both
sides as open-instruct ran after its July/August-2023 fixes: BOS, and stop strings end decoding (camel_jax per row;
the peer per batch, a row's stop marking it done and the batch running until its last row stops).
`--max_new_tokens` caps both sides alike.

Timed: camel_jax's whole command (model load, compilation, decoding, scoring incl. the Codex sandbox) and, as
`model work`, the sum of its tasks' decode/score wall times; the peer's model work only (no code execution, no
load). camel_jax decodes all generate settings in one engine queue (evaluate/run.py), so its per-task times are
each step's time shared by the tokens it gave the task: per-task ratios are indicative, the sums exact. camel_jax
runs as its own process (`python -m camel_jax.evaluate`) with an emptied persistent compilation cache; with
`--warm`, a second process into a fresh folder loads the programs the first compiled (what every evaluation after
a machine's first costs: `evaluate` keeps the cache, infer/compile_cache.py). Greedy outputs are compared.

    python scripts/bench_evaluate.py [--max_examples 2] [--max_new_tokens 32] [--tasks all] [--warm]
        [--protocol paper|fixed]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from camel_jax.evaluate import records as R  # noqa: E402
from camel_jax.evaluate import registry  # noqa: E402
from camel_jax.evaluate.run import truncate  # noqa: E402

BATCH = {"mmlu": 4, "gsm": 20, "bbh": 10, "tydiqa": 20, "codex": 32, "alpaca_farm": 8}  # the paper jobs' (§4.0)


def convert(work: pathlib.Path, shared: pathlib.Path) -> tuple[str, str]:
    """(camel_jax checkpoint, HF folder) of SmolLM2-135M-Instruct, converted once into `work`."""
    ckpt, hf_dir = work / "ckpt", work / "hf"
    if not (ckpt / "tokenizer").is_dir():
        from camel_jax.convert.gguf import import_gguf

        shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(hf_dir, ignore_errors=True)
        import_gguf(str(shared / "data" / "smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf", str(ckpt),
                    hf_dir=str(hf_dir))
    return str(ckpt), str(hf_dir)


def camel_run(ckpt: str, out: str, args, cache: str) -> float:
    """`python -m camel_jax.evaluate` in a process of its own (as a user runs it), JAX's persistent compilation
    cache in `cache`: the wall time of the whole command."""
    argv = ["--checkpoint", ckpt, "--out", out, "--tasks", args.tasks, "--max_examples", str(args.max_examples),
            "--max_new_tokens", str(args.max_new_tokens), "--protocol", args.protocol,
            "--chat_format", args.chat_format, "--slots", str(args.slots), "--no_progress", "--compile_cache", cache]
    if args.data_dir:
        argv += ["--data_dir", args.data_dir]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    t0 = time.perf_counter()
    if subprocess.run([sys.executable, "-m", "camel_jax.evaluate", *argv], env=env).returncode != 0:
        raise SystemExit("camel_jax.evaluate failed")
    return time.perf_counter() - t0


def _records(out: str, name: str) -> list[dict]:
    with open(os.path.join(out, name, R.PREDICTIONS)) as f:
        recs = {r["id"]: r for r in map(json.loads, f)}
    return [recs[i] for i in R.read_json(os.path.join(out, name, R.RUN_FILE))["ids"]]


def _batches(xs, n):
    return [xs[i:i + n] for i in range(0, len(xs), n)]


def peer(hf_dir: str, out: str, names: list[str], cap: int, protocol: str) -> tuple[float, dict]:
    """open-instruct's loop on transformers over camel_jax's saved prompts: (model-work seconds,
    {task: [texts per record]}). protocol paper: the June-2023 loop (no BOS but AlpacaFarm's, stop strings only
    cut the text afterwards); fixed: open-instruct after its July/August-2023 fixes (BOS, and a stopping criterion
    that ends a row at its first stop string: a batch runs until its last row stops)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

    class Stops(StoppingCriteria):
        def __init__(self, start: int, stops):
            self.start, self.stops = start, stops

        def __call__(self, input_ids, scores, **kw):
            texts = tok.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in self.stops) for t in texts], dtype=torch.bool)

    def encode(batch, recs):
        """Left-padded ids of the prompts as camel_jax fed them (its BOS when its record counts one more)."""
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in batch]
        ids = [[tok.bos_token_id] + x if r["prompt_tokens"] == len(x) + 1 else x for x, r in zip(ids, recs)]
        width = max(map(len, ids))
        return {"input_ids": torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids]),
                "attention_mask": torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])}

    torch.set_num_threads(os.cpu_count())
    tok = AutoTokenizer.from_pretrained(hf_dir, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    texts, total = {}, 0.0
    for name in names:
        s = registry.SETTINGS[name]
        recs = _records(out, name)
        prompts = [r["prompt"] for r in recs]
        t0 = time.perf_counter()
        with torch.inference_mode():
            if s.kind == "choice":
                ids = recs[0]["choice_ids"]
                got = []
                for b, rb in zip(_batches(prompts, BATCH[s.group]), _batches(recs, BATCH[s.group])):
                    enc = encode(b, rb)
                    logits = model(**enc).logits[:, -1]
                    got += [s.choices[int(i)] for i in torch.log_softmax(logits, -1)[:, ids].argmax(-1)]
                texts[name] = got
            else:
                d = s.decoding
                reps = [p for _ in range(d.n) for p in prompts]  # Codex: n passes over the prompt list
                rrecs = [r for _ in range(d.n) for r in recs]
                outs = []
                for b, rb in zip(_batches(reps, BATCH[s.group]), _batches(rrecs, BATCH[s.group])):
                    enc = encode(b, rb)
                    kw = dict(do_sample=True, temperature=d.temperature, top_p=d.top_p) if d.temperature else \
                        dict(do_sample=False)
                    if protocol == "fixed" and d.stop:
                        kw["stopping_criteria"] = StoppingCriteriaList([Stops(enc["input_ids"].shape[1], d.stop)])
                    gen = model.generate(**enc, max_new_tokens=min(d.max_new_tokens, cap),
                                         pad_token_id=tok.pad_token_id, **kw)
                    outs += [truncate(t, d.stop) for t in
                             tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
                texts[name] = [outs[i::len(prompts)] if d.n > 1 else outs[i] for i in range(len(prompts))]
        dt = time.perf_counter() - t0
        total += dt
        ours = R.read_json(os.path.join(out, name, R.RUN_FILE))["sessions"][-1]["wall_time_s"]
        print(f"  {name}: {len(prompts)} items, open-instruct way {dt:.1f} s, camel_jax (cold) {ours:.1f} s, "
              f"ratio {dt / ours:.2f}x", file=sys.stderr, flush=True)
    return total, texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--max_examples", type=int, default=2)
    ap.add_argument("--max_new_tokens", type=int, default=32, help="the generation cap, both sides")
    ap.add_argument("--slots", type=int, default=8, help="camel_jax engine slots")
    ap.add_argument("--chat_format", default="tulu", choices=("tulu", "hf", "none"))
    ap.add_argument("--protocol", default="paper", choices=("paper", "fixed"),
                    help="both sides: paper = the June-2023 loop; fixed = BOS, and decoding stops at the stop strings "
                         "(camel_jax per row, the peer per batch as open-instruct's fixed stopping criterion)")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--work", default="/tmp/bench_evaluate", help="conversion cache and evaluation folders")
    ap.add_argument("--warm", action="store_true", help="also a second camel_jax run on compiled programs")
    args = ap.parse_args()
    shared = pathlib.Path(os.environ.get("CAMEL_JAX_SHARED", REPO.parent / "shared"))
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt, hf_dir = convert(work, shared)
    names = [s.name for s in registry.resolve(args.tasks)]
    cache = work / "jax_cache"  # emptied: the first run compiles everything, a --warm second run loads it all
    shutil.rmtree(cache, ignore_errors=True)
    runs = []
    for n in range(2 if args.warm else 1):
        out = str(work / f"camel_{n}")
        shutil.rmtree(out, ignore_errors=True)
        wall = camel_run(ckpt, out, args, str(cache))
        work_s = sum(R.read_json(os.path.join(out, t, R.RUN_FILE))["sessions"][-1]["wall_time_s"] for t in names)
        runs.append((out, wall, work_s))
    t_peer, theirs = peer(hf_dir, runs[0][0], names, args.max_new_tokens, args.protocol)
    same = total = 0
    for name in names:
        s = registry.SETTINGS[name]
        if s.kind == "choice" or s.decoding.temperature == 0:
            for r, t in zip(_records(runs[0][0], name), theirs[name]):
                total += 1
                same += (r["answer"] if s.kind == "choice" else r["output"]) == t
    print(f"SmolLM2-135M-Instruct, fp32 CPU ({os.cpu_count()} cores), tasks {args.tasks} ({len(names)} settings), "
          f"--max_examples {args.max_examples}, --max_new_tokens {args.max_new_tokens}, protocol {args.protocol}")
    print(f"  open-instruct way (transformers, paper batch sizes), model work: {t_peer:.1f} s")
    for n, (_, wall, work_s) in enumerate(runs):
        label = "camel_jax, a second process (programs from the disk cache)" if n else \
            "camel_jax, cold (compiles included)"
        print(f"  {label}: whole command {wall:.1f} s (ratio {t_peer / wall:.2f}x), model work {work_s:.1f} s "
              f"(ratio {t_peer / work_s:.2f}x)")
    print(f"  identical greedy answers/outputs: {same}/{total}")


if __name__ == "__main__":
    main()
