"""ShareGPT (`sharegpt`): FastChat-style splitting of long conversations to a token budget, then role mapping.

Reference (open-instruct June 2023): `scripts/split_sharegpt_conversations.py` (FastChat's split_long_conversation
with a fix) over `sg_90k_part{1,2}_html_cleaned.json` with the LLaMA-7B tokenizer and max length 2048:
- truncate to an even number of turns; turn length = len(tokenizer(value).input_ids) + 6 (input_ids has BOS);
- walk turn pairs (i, i+1): if cur_len + pair_len > max_length, emit [start, i), then start = i + 2 if the pair
  alone exceeds max_length else i, and cur_len = 0; elif it is the last pair emit [start, i + 2); then
  cur_len += pair_len (quirks kept: empty chunks, a dropped last pair when the split triggers on it, cur_len
  carrying the skipped pair's length); chunk ids `<id>_<start>`;
- `filter_invalid_roles`: keep non-empty chunks alternating human, gpt, human, … from the start.
Then `convert_sharegpt_data`: human/user -> user, gpt/chatgpt -> assistant, a system or bing turn drops the
conversation, any other role raises, empty conversations are dropped; ids `sharegpt_<chunk id>`.

Deviations and why:
- Roles are checked before splitting: a turn whose "from" is none of human/user/gpt/chatgpt/system/bing is an
  `unknown_role` bad record (error naming file and record, or skipped and counted). In the reference such turns
  are silently removed by the role filter before the converter's check could ever raise.
- Conversations the reference drops silently are counted by reason: `dropped: empty_conversation` (no turns;
  the published ShareGPT files have such records, so this is the reference's rule, not an input error),
  `too_short` (one turn) and `no_valid_chunk` (all chunks empty or non-alternating, which includes every
  conversation with a system/bing turn); per-chunk counts go in the summary notes.
- The tokenizer is camel_jax's: SentencePiece on LLaMA's tokenizer.model with BOS added, which gives the ids of the
  reference's slow LLaMA tokenizer; default the LLaMA tokenizer at $CAMEL_JAX_TOKENIZER or ../shared/data.
- Input files in the reference's order (part1, part2), or a folder's *.json sorted by name; one process, no pool.
"""
from __future__ import annotations

import collections
import os
import random
from typing import Iterator

from camel_jax.data.converters._common import input_files
from camel_jax.data.records import BadRecord, RecordError, Tally, read_records, require

REFERENCE_FILES = ("sg_90k_part1_html_cleaned.json", "sg_90k_part2_html_cleaned.json")
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant"}
DROP_ROLES = ("system", "bing")
ENV_TOKENIZER = "CAMEL_JAX_TOKENIZER"


def default_tokenizer_path() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get(ENV_TOKENIZER),
                  os.path.join(here, "..", "..", "..", "..", "shared", "data", "llama_tokenizer")]
    for c in candidates:
        if c and os.path.exists(c):
            return os.path.normpath(c)
    raise RecordError(f"sharegpt splitting needs the LLaMA tokenizer: pass --tokenizer PATH or set "
                      f"${ENV_TOKENIZER}")


def split_points(lengths: list[int], max_length: int) -> list[tuple[int, int]]:
    """(start, end) turn ranges, exactly the reference's split_one_sample on per-turn lengths."""
    n = len(lengths) // 2 * 2
    if n < 2:
        return []
    chunks, start, cur = [], 0, 0
    for i in range(0, n, 2):
        pair = lengths[i] + lengths[i + 1]
        if cur + pair > max_length:
            chunks.append((start, i))
            start = i + 2 if pair > max_length else i
            cur = 0
        elif i == n - 2:
            chunks.append((start, i + 2))
        cur += pair
    return chunks


def _turns(d) -> tuple[str, list[tuple[str, str]]]:
    (conv_id,) = require(d, "id", types=(str, int))
    (conversations,) = require(d, "conversations", types=(list,))
    turns = []
    for j, t in enumerate(conversations):
        try:
            role, value = require(t, "from", "value")
        except BadRecord as e:
            raise BadRecord(e.reason, f"turn {j}: {e.detail}") from None
        if role not in ROLE_MAP and role not in DROP_ROLES:
            raise BadRecord("unknown_role", f"turn {j} is from {role!r}")
        turns.append((role, value))
    return str(conv_id), turns


def _valid_roles(chunk: list[tuple[str, str]]) -> bool:
    return bool(chunk) and all(role == ("human", "gpt")[j % 2] for j, (role, _) in enumerate(chunk))


def convert(name: str, raw: str, rng: random.Random, tally: Tally, tokenizer=None, max_length: int = 2048,
            no_split: bool = False) -> Iterator[dict]:
    if not no_split and (tokenizer is None or isinstance(tokenizer, str)):
        from camel_jax.model.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer or default_tokenizer_path())
    chunks_seen = collections.Counter()
    for path in input_files(raw, REFERENCE_FILES, ("*.json",), many=True, what=name):
        for rec in read_records(path, tally):
            parsed = tally.attempt(rec, _turns)
            if parsed is None:
                continue
            conv_id, turns = parsed
            if not no_split:
                lengths = [len(tokenizer.encode(v, add_bos=True)) + 6 for _, v in turns[: len(turns) // 2 * 2]]
                ranges = split_points(lengths, max_length)
            else:
                ranges = [(0, len(turns))]
            emitted = 0
            for start, end in ranges:
                chunk = turns[start:end]
                if not chunk:
                    chunks_seen["empty"] += 1
                elif not _valid_roles(chunk):
                    chunks_seen["invalid_roles"] += 1
                else:
                    chunks_seen["written"] += 1
                    emitted += 1
                    messages = [{"role": ROLE_MAP[r], "content": v} for r, v in chunk]
                    ex_id = f"sharegpt_{conv_id}_{start}" if not no_split else f"sharegpt_{conv_id}"
                    yield {"dataset": name, "id": ex_id, "messages": messages}
            if emitted:
                tally.converted += 1
            else:
                tally.drop("empty_conversation" if not turns else "too_short" if len(turns) < 2
                           else "no_valid_chunk")
    tally.notes.append(f"chunks (max_length {'no split' if no_split else max_length}): written "
                       f"{chunks_seen['written']}, empty {chunks_seen['empty']}, non-alternating or system/bing "
                       f"roles {chunks_seen['invalid_roles']}")
