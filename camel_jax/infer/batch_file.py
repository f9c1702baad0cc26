"""Batch files through the engine: a jsonl of prompts in, a jsonl of completions out, resumable after a kill.

Each input line is `{"id", "prompt"}` (raw text, used as-is with BOS) or `{"id", "messages"}` (a conversation, put
through the chat format). The whole input is checked and tokenized before the model is loaded, so a bad line costs
seconds, not a model load, and is reported as `file:line: ...` (a UsageError). Each finished record is appended as
one self-contained line, flushed and fsynced, in order of completion: a kill loses at most the lines being
written. A rerun reads the ids already in the output (a torn last line, one without its newline, is cut off and
redone) and submits only the rest, so the file ends with every input id exactly once.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Sequence

from camel_jax.cli import UsageError, json_lines


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {\"role\", \"content\"}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be {{\"role\": str, \"content\": str}}"
    return None


def read_input(path: str) -> list[tuple[int, Any, str | list]]:
    """(line number, id, prompt text or messages) per record; any malformed line is a UsageError naming it."""
    records, seen = [], {}
    for n, rec in json_lines(path):
        where = f"{path}:{n}"
        if "id" not in rec:
            raise UsageError(f"{where}: no \"id\"")
        rid = rec["id"]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise UsageError(f"{where}: \"id\" must be a string or an integer, got {_key(rid)}")
        if _key(rid) in seen:
            raise UsageError(f"{where}: duplicate id {_key(rid)} (first on line {seen[_key(rid)]})")
        seen[_key(rid)] = n
        has_p, has_m = "prompt" in rec, "messages" in rec
        if has_p == has_m:
            raise UsageError(f"{where}: needs exactly one of \"prompt\" (raw text) or \"messages\" "
                             f"(a conversation), got {'both' if has_p else 'neither'}")
        if has_p and not isinstance(rec["prompt"], str):
            raise UsageError(f"{where}: \"prompt\" must be a string")
        problem = None if has_p else _check_messages(rec["messages"])
        if problem:
            raise UsageError(f"{where}: {problem}")
        records.append((n, rid, rec["prompt"] if has_p else rec["messages"]))
    if not records:
        raise UsageError(f"{path}: no records")
    return records


def read_done(path: str, known: set[str], settings: dict | None = None) -> set[str]:
    """Ids already complete in the output file. A last line without its newline (a kill mid-write) is truncated
    away so it is redone; any other unreadable line, an id not in the input, or a record made with other
    `settings` (sampling flags) is a UsageError: resuming must not mix two runs in one file."""
    if not os.path.exists(path):
        return set()
    done, good = set(), 0
    with open(path, "rb") as f:
        data = f.read()
    for n, raw in enumerate(data.splitlines(keepends=True), 1):
        if not raw.endswith(b"\n"):
            break  # torn: dropped below
        try:
            rec = json.loads(raw)
            key = _key(rec["id"])
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{path}:{n}: not a complete output record; is this the output of this input?") \
                from None
        if key not in known:
            raise UsageError(f"{path}:{n}: id {key} is not in the input; is this the output of this input?")
        if key in done:
            raise UsageError(f"{path}:{n}: duplicate id {key}")
        for flag, value in (settings or {}).items():
            if rec.get(flag) != value:
                raise UsageError(f"{path}:{n}: written with --{flag} {rec.get(flag)!r}, this run has {value!r}; "
                                 f"rerun with the same flags or write another --output")
        done.add(key)
        good += len(raw)
    cut_after(path, good, len(data))
    return done


def cut_after(path: str, good: int, size: int) -> None:
    """Cut a jsonl file back to its first `good` bytes (the complete records) when a torn or refused tail follows,
    durably, so the rerun appends after the last whole line (the evaluate driver's predictions use it too)."""
    if good < size:
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())


def encode(records: Sequence[tuple[int, Any, str | list]], path: str, tokenizer, chat_format: str,
           add_bos: bool) -> list[list[int]]:
    """Prompt ids per record: raw text as-is (BOS first unless add_bos is off), messages through chat_format."""
    from camel_jax.infer.chat import encode_prompt

    out = []
    for n, _, prompt in records:
        try:
            if isinstance(prompt, str):
                out.append(tokenizer.encode(prompt, add_bos=add_bos))
            else:
                out.append(encode_prompt(prompt, chat_format, tokenizer, add_bos=add_bos))
        except ValueError as e:
            raise UsageError(f"{path}:{n}: {e}") from None
        if not out[-1]:
            raise UsageError(f"{path}:{n}: the prompt encodes to no tokens (drop --no_bos, or give text)")
    return out


def _bar(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="generate", unit="prompt", file=sys.stderr, mininterval=1.0)


def run(args) -> int:
    """The `--input`/`--output` mode of `python -m camel_jax.generate` (flags as generate.main defines them)."""
    from camel_jax import params_io
    from camel_jax.infer.engine import Engine, Request
    from camel_jax.model.tokenizer import load_tokenizer

    if not args.output:
        raise UsageError("--input needs --output (the jsonl the completions are appended to)")
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise UsageError(f"--output {args.output} is the --input file")
    records = read_input(args.input)
    known = {_key(rid) for _, rid, _ in records}
    tok_dir = params_io.require_tokenizer_dir(args.checkpoint)
    cfg = params_io.load_model_config(args.checkpoint)
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "top_k": args.top_k, "seed": args.seed, "stop": list(args.stop), "ignore_eos": args.ignore_eos}
    done = read_done(args.output, known, sampling)
    todo = [r for r in records if _key(r[1]) not in done]
    tokenizer = load_tokenizer(tok_dir)
    prompts = encode(todo, args.input, tokenizer, args.chat_format, not args.no_bos)
    for (n, _, _), p in zip(todo, prompts):
        if len(p) + args.max_new_tokens > cfg.max_seq_len:
            raise UsageError(f"{args.input}:{n}: prompt ({len(p)} tokens) + --max_new_tokens ({args.max_new_tokens})"
                             f" exceeds the model's max_seq_len {cfg.max_seq_len}")
    start, new_tokens = time.time(), 0
    if todo:
        params, cfg = params_io.load_params(args.checkpoint)
        cfg = cfg.replace(dtype=args.dtype)
        longest = max(len(p) for p in prompts)
        max_len = min(cfg.max_seq_len, -(-(longest + args.max_new_tokens) // 128) * 128)
        engine = Engine(params, cfg, slots=max(1, min(args.slots, len(todo))), max_len=max_len,
                        tokenizer=tokenizer, quantize=getattr(args, "quantize", None))
        for p in prompts:
            engine.submit(Request(p, args.max_new_tokens, args.temperature, args.top_k, args.top_p, seed=args.seed,
                                  stop=args.stop, ignore_eos=args.ignore_eos))
        bar = _bar(len(records), len(done))
        with open(args.output, "a", encoding="utf-8") as out:
            while True:
                more = engine.step()
                for i, (c,) in engine.pop_finished():
                    _, rid, prompt = todo[i]
                    rec = {"id": rid, "output": c.text, "prompt_tokens": len(prompts[i]),
                           "output_tokens": len(c.tokens), "finish_reason": c.finish_reason,
                           "chat_format": "raw" if isinstance(prompt, str) else args.chat_format, **sampling}
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    new_tokens += len(c.tokens)
                    bar.update(1)
                if not more:
                    break
        bar.close()
    took = time.time() - start
    print(f"{args.output}: {len(records)} records ({len(done)} already done, {len(todo)} generated, "
          f"{new_tokens} new tokens in {took:.1f}s)", file=sys.stderr)
    return 0
