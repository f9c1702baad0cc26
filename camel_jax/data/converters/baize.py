"""Baize self-chat (`baize`): the `[|Human|]` / `[|AI|]` transcript string becomes user/assistant turns.

Reference (open-instruct `convert_baize_data`, June 2023): files `{alpaca,medical,quora,stackoverflow}_chat_data.json`
in that order; per record `input.split("[|Human|]")[1:]`, rounds that are blank or lack `[|AI|]` are skipped (this
drops the trailing empty "[|Human|] " and the system line before the first turn), otherwise
`human, ai = round.split("[|AI|]")`, both stripped. Ids `baize_<index>` over all files.

Deviations and why:
- A round with more than one `[|AI|]` makes the reference crash on tuple unpacking; here it is a `malformed_turns`
  bad record (error naming file and record, or skipped and counted).
- A record that yields no turn is written by the reference and later crashes training; here it is an
  `empty_conversation` bad record.
- A folder without the four reference files is read as its `*chat_data*.json` files sorted by name.
"""
from __future__ import annotations

import random
from typing import Iterator

from camel_jax.data.converters._common import input_files
from camel_jax.data.records import BadRecord, Tally, check_messages, read_records, require

REFERENCE_FILES = tuple(f"{s}_chat_data.json" for s in ("alpaca", "medical", "quora", "stackoverflow"))


def transcript_messages(d) -> list[dict]:
    (text,) = require(d, "input")
    messages = []
    for i, rnd in enumerate(text.split("[|Human|]")[1:]):
        if not rnd.strip() or "[|AI|]" not in rnd:
            continue
        parts = rnd.split("[|AI|]")
        if len(parts) != 2:
            raise BadRecord("malformed_turns", f"round {i} has {len(parts) - 1} [|AI|] markers")
        messages += [{"role": "user", "content": parts[0].strip()}, {"role": "assistant", "content": parts[1].strip()}]
    return check_messages(messages)


def convert(name: str, raw: str, rng: random.Random, tally: Tally) -> Iterator[dict]:
    for path in input_files(raw, REFERENCE_FILES, ("*chat_data*.json",), many=True, what=name):
        for rec in read_records(path, tally):
            index = tally.read - 1
            messages = tally.attempt(rec, transcript_messages)
            if messages is None:
                continue
            tally.converted += 1
            yield {"dataset": name, "id": f"baize_{index}", "messages": messages}
