"""Open Assistant (`oasst1`): every path from a tree's root to each assistant message becomes one conversation.

Reference (open-instruct `convert_oasst1_data`, June 2023 — before the Aug 2023 switch to leaf-only paths): read
`2023-04-12_oasst_ready.trees.jsonl`, depth-first over each tree's `prompt` node in reply order; at every
assistant node (leaf or intermediate) emit the path so far, so prefixes repeat across examples; prompter -> user;
any other role raises. All languages, no quality/deletion filter. Ids `oasst1_<running count>`.

Deviations and why:
- Also accepted: the message-export layout where each line is the root message itself ({"message_id", "role",
  "text", "replies"}), the form of the public English sample; same traversal.
- A tree is validated whole before any of its paths is emitted: an unknown role or a message without text is an
  error naming file and line (the reference raises without saying where), or with --skip_bad_records the whole
  tree is skipped and counted. Trees with no assistant message give no example and are counted as dropped.
- Iterative traversal (same order) so deep trees cannot hit Python's recursion limit.
"""
from __future__ import annotations

import random
from typing import Iterator

from camel_jax.data.converters._common import input_files
from camel_jax.data.records import BadRecord, Tally, read_records

ROLE_MAP = {"prompter": "user", "assistant": "assistant"}
REFERENCE_FILES = ("2023-04-12_oasst_ready.trees.jsonl", "2023-04-12_oasst_ready.trees.jsonl.gz")


def tree_paths(root: dict) -> list[list[dict]]:
    """All root->assistant paths in the reference's DFS order; raises BadRecord on malformed messages."""
    paths: list[list[dict]] = []
    stack = [(root, 0)]  # (node, depth); the path is rebuilt from `prefix` truncated to depth
    prefix: list[dict] = []
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            raise BadRecord("bad_type", f"message at depth {depth} is {type(node).__name__}")
        role = node.get("role")
        if role not in ROLE_MAP:
            raise BadRecord("unknown_role", f"message {node.get('message_id', '?')} has role {role!r}")
        if not isinstance(node.get("text"), str):
            raise BadRecord("missing_field", f"message {node.get('message_id', '?')} has no text")
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            raise BadRecord("bad_type", f"message {node.get('message_id', '?')} replies is not a list")
        del prefix[depth:]
        prefix.append({"role": ROLE_MAP[role], "content": node["text"]})
        if role == "assistant":
            paths.append(list(prefix))
        stack.extend((child, depth + 1) for child in reversed(replies))
    return paths


def _root(d) -> dict:
    if isinstance(d, dict) and "prompt" in d:
        return d["prompt"]
    if isinstance(d, dict) and "role" in d:
        return d
    raise BadRecord("missing_field", "neither a tree with 'prompt' nor a message with 'role'")


def convert(name: str, raw: str, rng: random.Random, tally: Tally) -> Iterator[dict]:
    files = input_files(raw, REFERENCE_FILES, ("*trees.jsonl", "*trees.jsonl.gz", "*_tree.jsonl"), what=name)
    count = 0
    for path in files:
        for rec in read_records(path, tally):
            paths = tally.attempt(rec, lambda d: tree_paths(_root(d)))
            if paths is None:
                continue
            if not paths:
                tally.drop("no_assistant_reply")
                continue
            tally.converted += 1
            for messages in paths:
                yield {"dataset": name, "id": f"oasst1_{count}", "messages": messages}
                count += 1
