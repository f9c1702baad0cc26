"""MMLU-style next-token scoring: camel_jax's `Scorer.next_token_logprobs` against the open-instruct way, one run.

Both sides score the same real prompts: `--n` questions drawn with a fixed seed from ../shared/data/mmlu/test, in the
0-shot prompt of open_instruct.md §4.1 (Hendrycks' header with its double space, the question, "A. ..." to "D. ...",
"\nAnswer:"), not chat-wrapped (SmolLM2's own template is ChatML, not TÜLU's), tokenized without special tokens (the
June-2023 eval). The answer is the argmax among the bare letters "A".."D" at the last position (§4.1).

open-instruct's way (`get_next_word_predictions`): prompts in their given order, left-padded batches of 4 (its MMLU
eval batch size), one transformers forward each, `logits[:, -1, :]`. camel_jax's: `Scorer(batch_size)` (sorted by
length, packed several to a row as segments, only the last positions through the head). Both fp32, the same weights.
Printed: prompts/s each side, the ratio, argmax agreement among A-D, the largest log-prob difference on A-D.

    python scripts/bench_mmlu.py [--gguf ../shared/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--n 500]
        [--batch_size 8] [--reps 2]
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import random
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from camel_jax.infer.scoring import Scorer  # noqa: E402
from bench_engine import gguf_model  # noqa: E402

SHARED = os.environ.get("CAMEL_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
GGUF = os.path.join(SHARED, "data", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def mmlu_prompts(folder: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(0-shot prompt, gold letter) for n test questions sampled with `seed` from every subject's test csv."""
    items = []
    for path in sorted(glob.glob(os.path.join(folder, "test", "*_test.csv"))):
        subject = os.path.basename(path)[:-len("_test.csv")]
        about = " " + " ".join(subject.split("_"))  # Hendrycks' format_subject: hence "about  abstract algebra"
        header = f"The following are multiple choice questions (with answers) about {about}.\n\n"
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                q, choices, gold = row[0], row[1:5], row[5]
                body = q + "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", choices)) + "\nAnswer:"
                items.append((header + body, gold))
    return random.Random(seed).sample(items, n)


def hf_next_token(model, ids: list[list[int]], pad_id: int, batch_size: int = 4) -> np.ndarray:
    """open-instruct's `get_next_word_predictions`: left-padded batches in the given order, last-position log-probs."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            chunk = ids[i:i + batch_size]
            width = max(len(x) for x in chunk)
            tokens = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, x in enumerate(chunk):
                tokens[r, width - len(x):] = torch.tensor(x)
                mask[r, width - len(x):] = 1
            logits = model(input_ids=tokens, attention_mask=mask).logits[:, -1, :]
            out.append(torch.log_softmax(logits.float(), dim=-1).numpy())
    return np.concatenate(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=GGUF)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch_size", type=int, default=8, help="camel_jax's rows per forward")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    cfg, params, model = gguf_model(args.gguf)
    folder, name = os.path.split(args.gguf)
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)

    items = mmlu_prompts(os.path.join(SHARED, "data", "mmlu"), args.n)
    ids = [tok(p, add_special_tokens=False).input_ids for p, _ in items]
    letters = [tok.encode(c, add_special_tokens=False)[0] for c in "ABCD"]  # bare letters, as §4.1
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    lengths = [len(x) for x in ids]
    print(f"{args.n} MMLU test prompts (0-shot), {np.mean(lengths):.0f} tokens on average ({min(lengths)}-"
          f"{max(lengths)}); candidate ids {letters}")

    scorer = Scorer(params, cfg, batch_size=args.batch_size, max_len=cfg.max_seq_len)
    scorer.next_token_logprobs(ids)  # compiles every bucket
    t_hf, t_ours = [], []
    for _ in range(args.reps):  # in turn: the machine's other load hits both sides alike
        t0 = time.perf_counter()
        theirs = hf_next_token(model, ids, pad)
        t_hf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = scorer.next_token_logprobs(ids)
        t_ours.append(time.perf_counter() - t0)
    t_hf, t_ours = statistics.median(t_hf), statistics.median(t_ours)
    a, b = ours[:, letters], theirs[:, letters]
    agree = int(np.sum(a.argmax(1) == b.argmax(1)))
    gold = np.array(["ABCD".index(g) for _, g in items])
    print(f"  open-instruct way (transformers, left-padded batches of 4): {args.n / t_hf:6.1f} prompts/s "
          f"({t_hf:.1f} s)")
    print(f"  camel_jax Scorer (batch {args.batch_size}):                        {args.n / t_ours:6.1f} prompts/s "
          f"({t_ours:.1f} s)  ratio {t_hf / t_ours:.2f}x  (medians of {args.reps})")
    print(f"  argmax among A-D agrees: {agree}/{args.n}; max |log-prob difference| on A-D: {np.abs(a - b).max():.2e}; "
          f"accuracy {np.mean(a.argmax(1) == gold):.3f} (ours) {np.mean(b.argmax(1) == gold):.3f} (theirs)")


if __name__ == "__main__":
    main()
