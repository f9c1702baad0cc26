#!/usr/bin/env python
"""Rebuild camel_jax/assets/tulu_mix_sample.jsonl: a small real sample of the TÜLU human+GPT mix.

Each dataset of the mix is converted by camel_jax's own converters from the raw public samples in
../shared/data (seed 42), then short examples are kept — ASCII-only, with the chat-formatted conversation
("<|user|>\\n…\\n<|assistant|>\\n…</s>\\n") at most MAX_CHARS characters, so it fits 512 tokens of a
character-level 512-piece tokenizer such as stories260K's — and N of them are drawn with random.Random(42),
kept in converter order. Datasets are written in the mixture's order. FLAN v2 has no raw sample in ../shared
(only its CoT submix), so `cot` stands for the FLAN part; see camel_jax/assets/LICENSES.md.

    PYTHONPATH=. python scripts/make_default_sample.py [--shared ../shared/data] [--out camel_jax/assets/...]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from camel_jax.data.prepare import convert_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CHARS = 480
# dataset -> (raw path under ../shared/data, examples to keep, converter options)
PLAN = {
    "cot": ("flan_v2", 70, {}),
    "dolly": ("dolly/databricks-dolly-15k.head34.jsonl", 10, {}),
    "oasst1": ("oasst/en_100_tree.jsonl", 60, {}),
    "gpt4_alpaca": ("gpt4_alpaca/alpaca_en_demo.LLaMA-Factory.UNVERIFIED.json", 50, {}),
    "code_alpaca": ("code_alpaca/code_alpaca_2k.json", 60, {}),
    # split to a 128-LLaMA-token budget (not 2048) so that whole chunks fit the character budget
    "sharegpt": ("sharegpt/ShareGPT_V3_unfiltered_cleaned_split.head.json", 50,
                 {"tokenizer": "llama_tokenizer", "max_length": 128}),
}


def chat_chars(messages: list[dict]) -> int:
    return sum(len(f"<|{m['role']}|>\n{m['content'].strip()}\n") + (4 if m["role"] == "assistant" else 0)
               for m in messages)


def fits(ex: dict) -> bool:
    return all(m["content"].isascii() for m in ex["messages"]) and chat_chars(ex["messages"]) <= MAX_CHARS


def build(shared: str, seed: int = 42) -> tuple[list[dict], dict]:
    out, counts = [], {}
    for name, (rel, n, opts) in PLAN.items():
        opts = {k: os.path.join(shared, v) if k == "tokenizer" else v for k, v in opts.items()}
        examples, _ = convert_dataset(name, os.path.join(shared, rel), seed=seed, **opts)
        short = [i for i, ex in enumerate(examples) if fits(ex)]
        keep = sorted(random.Random(seed).sample(short, min(n, len(short))))
        out += [examples[i] for i in keep]
        counts[name] = {"converted": len(examples), "short": len(short), "kept": len(keep)}
    return out, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(REPO, "camel_jax", "assets", "tulu_mix_sample.jsonl"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    examples, counts = build(args.shared, args.seed)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex, ensure_ascii=False) + "\n")
    for name, c in counts.items():
        print(f"{name:12s} converted {c['converted']:6d}  short {c['short']:6d}  kept {c['kept']:4d}")
    print(f"{len(examples)} examples, {os.path.getsize(args.out)} bytes -> {args.out}")


if __name__ == "__main__":
    main()
