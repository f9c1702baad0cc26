"""Data benchmark: tokenise + mask + pack throughput of camel_jax against the open-instruct way, and packing efficiency.

    JAX_PLATFORMS=cpu PYTHONPATH=. python scripts/bench_data.py [--data FILE.jsonl] [--max_seq_length 2048]

Peer (open-instruct finetune.py, June 2023): `datasets.Dataset.map(encode_with_messages_format)` with a transformers
AutoTokenizer on the LLaMA folder (fast tokenizer, `<pad>` added as open-instruct does), the no-label filter, then
DataCollatorForSeq2Seq-style padding to the longest example of each batch. camel_jax: TrainData (SentencePiece,
chat_format, best-fit-decreasing packing into rows of max_seq_length) and materialising every batch of one epoch.
Both single process, same examples, nothing cached; each side timed `--repeats` times, medians compared.

Examples: camel_jax/assets/tulu_mix_sample.jsonl (the bundled TÜLU-mix sample), or with --raw (or when the sample is
absent) the raw samples of the TÜLU-mix datasets in ../shared/data converted with camel_jax.data's converters.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.environ.get("CAMEL_JAX_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
SAMPLE = os.path.join(REPO, "camel_jax", "assets", "tulu_mix_sample.jsonl")
# TÜLU (human+GPT) mix datasets with a raw sample in ../shared/data (no raw FLAN v2 submix sample exists there)
RAW = {"cot": ("flan_v2/cot_data", {"flan_templates": "flan_v2/templates.py"}), "dolly": ("dolly", {}),
       "oasst1": ("oasst", {}), "gpt4_alpaca": ("gpt4_alpaca", {}),
       "code_alpaca": ("code_alpaca/code_alpaca_2k.json", {}), "sharegpt": ("sharegpt", {})}


def load_examples(path: str | None, raw: bool = False, per_dataset: int = 0) -> tuple[list[dict], str]:
    from camel_jax.data.pipeline import read_records

    if path or (os.path.isfile(SAMPLE) and not raw):
        path = path or SAMPLE
        return read_records(path), path
    from camel_jax.data.prepare import convert_dataset

    out, used = [], []
    for ds, (sub, opts) in RAW.items():
        opts = {k: os.path.join(SHARED, "data", v) for k, v in opts.items()}
        try:
            exs, _ = convert_dataset(ds, os.path.join(SHARED, "data", sub), skip_bad_records=True, **opts)
        except Exception as e:  # a converter not landed yet, or a raw layout it does not take
            print(f"  (skipping {ds}: {type(e).__name__}: {str(e)[:120]})")
            continue
        exs = exs[:per_dataset] if per_dataset > 0 else exs
        out += [{"dataset": ds, "messages": e["messages"]} for e in exs]
        used.append(f"{ds}={len(exs)}")
    return out, "raw samples converted: " + ", ".join(used)


def open_instruct_way(records, hf_tok, max_len, batch_size):
    """finetune.py's encode_with_messages_format + datasets.map + filter + per-batch padding to the longest."""
    import datasets
    import torch

    datasets.disable_progress_bars()

    def encode_with_messages_format(example):
        messages = example["messages"]

        def _concat_messages(messages):
            message_text = ""
            for message in messages:
                if message["role"] == "system":
                    message_text += "<|system|>\n" + message["content"].strip() + "\n"
                elif message["role"] == "user":
                    message_text += "<|user|>\n" + message["content"].strip() + "\n"
                elif message["role"] == "assistant":
                    message_text += "<|assistant|>\n" + message["content"].strip() + hf_tok.eos_token + "\n"
                else:
                    raise ValueError("Invalid role: {}".format(message["role"]))
            return message_text

        example_text = _concat_messages(messages).strip()
        tokenized_example = hf_tok(example_text, return_tensors="pt", max_length=max_len, truncation=True)
        input_ids = tokenized_example.input_ids
        labels = input_ids.clone()
        for message_idx, message in enumerate(messages):
            if message["role"] != "assistant":
                if message_idx == 0:
                    message_start_idx = 0
                else:
                    message_start_idx = hf_tok(_concat_messages(messages[:message_idx]), return_tensors="pt",
                                               max_length=max_len, truncation=True).input_ids.shape[1]
                if message_idx < len(messages) - 1 and messages[message_idx + 1]["role"] == "assistant":
                    messages_so_far = _concat_messages(messages[:message_idx + 1]) + "<|assistant|>\n"
                else:
                    messages_so_far = _concat_messages(messages[:message_idx + 1])
                message_end_idx = hf_tok(messages_so_far, return_tensors="pt", max_length=max_len,
                                         truncation=True).input_ids.shape[1]
                labels[:, message_start_idx:message_end_idx] = -100
                if message_end_idx >= max_len:
                    break
        attention_mask = torch.ones_like(input_ids)
        return {"input_ids": input_ids.flatten(), "labels": labels.flatten(),
                "attention_mask": attention_mask.flatten()}

    ds = datasets.Dataset.from_list([{"messages": r["messages"]} for r in records])
    ds = ds.map(encode_with_messages_format, remove_columns=["messages"], load_from_cache_file=False,
                keep_in_memory=True, desc=None)
    ds.set_format(type="pt")
    ds = ds.filter(lambda ex: (ex["labels"] != -100).any(), keep_in_memory=True, load_from_cache_file=False)
    n, pad_id, real, slots = len(ds), hf_tok.pad_token_id, 0, 0
    for s in range(0, n, batch_size):
        feats = ds[s:s + batch_size]
        L = max(len(x) for x in feats["input_ids"])
        ids = torch.full((len(feats["input_ids"]), L), pad_id)
        labels = torch.full_like(ids, -100)
        att = torch.zeros_like(ids)
        for i, (x, y) in enumerate(zip(feats["input_ids"], feats["labels"])):  # DataCollatorForSeq2Seq, right pad
            ids[i, :len(x)], labels[i, :len(y)], att[i, :len(x)] = x, y, 1
        real, slots = real + int(att.sum()), slots + att.numel()
    return n, real / max(slots, 1)


def camel_way(records, tok, max_len, batch_size, packing):
    from camel_jax.data.pipeline import TrainData

    data = TrainData(records, tok, max_seq_length=max_len, batch_size=batch_size, packing=packing, prefetch=0)
    with data.iterator(num_epochs=1) as it:
        for _ in it:
            pass
    return data


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="unified .jsonl (default: the bundled TÜLU-mix sample or raw samples)")
    p.add_argument("--raw", action="store_true", help="convert the raw samples in ../shared/data even when the "
                   "bundled sample exists (more examples)")
    p.add_argument("--per_dataset", type=int, default=2000, help="with --raw: first N examples of each dataset "
                   "(0: all; CoT alone gives ~67k)")
    p.add_argument("--tokenizer", default=os.path.join(SHARED, "data", "llama_tokenizer"))
    p.add_argument("--max_seq_length", type=int, default=2048)
    p.add_argument("--batch_size", type=int, default=8, help="rows per batch on both sides")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from camel_jax.data.packing import plan_rows
    from camel_jax.model.tokenizer import load_tokenizer

    records, src = load_examples(args.data, args.raw, args.per_dataset)
    print(f"examples: {len(records)} ({src})")
    tok = load_tokenizer(args.tokenizer)
    hf_tok = AutoTokenizer.from_pretrained(args.tokenizer)
    hf_tok.add_special_tokens({"pad_token": "<pad>"})  # finetune.py: exactly one token added, <pad> = 32000

    t_oi, (n_oi, eff_longest) = timed(lambda: open_instruct_way(records, hf_tok, args.max_seq_length,
                                                                args.batch_size), args.repeats)
    t_cj, data = timed(lambda: camel_way(records, tok, args.max_seq_length, args.batch_size, True), args.repeats)
    print(f"kept examples: open-instruct {n_oi}, camel_jax {data.num_examples} (dropped: {data.drops.summary()})")
    r_oi, r_cj = n_oi / t_oi, data.num_examples / t_cj
    print(f"open-instruct (datasets.map + HF tokenizer + pad per batch): {t_oi:.2f} s  {r_oi:,.0f} examples/s")
    print(f"camel_jax (TrainData: SentencePiece + masks + BFD packing + all batches): {t_cj:.2f} s  "
          f"{r_cj:,.0f} examples/s")
    print(f"throughput ratio camel_jax / open-instruct: {r_cj / r_oi:.2f}x  (median of {args.repeats})")

    T = args.max_seq_length
    slots = data.examples.slots
    eff = {}
    for mode in ("bfd", "greedy", "none"):
        plan = plan_rows(slots, T, mode)
        eff[mode] = (float(slots.sum()) / (plan.num_rows * T), plan.num_rows)
    print(f"packing efficiency at {T} tokens (non-pad fraction of row slots), {len(slots)} examples, "
          f"{int(slots.sum()):,} tokens:")
    print(f"  packed, best-fit decreasing: {100 * eff['bfd'][0]:.1f}%  ({eff['bfd'][1]} rows)")
    print(f"  packed, greedy next-fit:     {100 * eff['greedy'][0]:.1f}%  ({eff['greedy'][1]} rows)")
    print(f"  one example per row (paper, padded to {T}): {100 * eff['none'][0]:.1f}%  ({eff['none'][1]} rows)")
    print(f"  open-instruct pad-to-longest per batch of {args.batch_size} (unshuffled): {100 * eff_longest:.1f}%")
    print(f"  rows saved by packing vs one-per-row: {eff['none'][1] / eff['bfd'][1]:.2f}x fewer")
    print(json.dumps({"examples_per_s": {"open_instruct": r_oi, "camel_jax": r_cj}, "ratio": r_cj / r_oi,
                      "efficiency": {k: v[0] for k, v in eff.items()}, "efficiency_pad_longest": eff_longest}))


if __name__ == "__main__":
    main()
