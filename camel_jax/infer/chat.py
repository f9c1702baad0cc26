"""Prompts for generation in one of three chat formats, sharing the training encoder so they cannot drift apart.

* ``tulu``: the paper's format, ids from `data.chat_format.encode_prompt` — by construction the prefix of the stream
  `camel_jax.data` trains on, ending with the "<|assistant|>\\n" header.
* ``hf``: the tokenizer's own `chat_template` through transformers' `apply_chat_template(add_generation_prompt=True)`
  (e.g. SmolLM2-Instruct's ChatML). For a checkpoint exported by camel_jax after TÜLU training the exported template
  *is* the TÜLU format (`data.chat_format.chat_template`), and gives the same ids as ``tulu``.
* ``none``: raw text, BOS first; a conversation must then be a single message, whose content is the text.

A plain string prompt is one user message under ``tulu`` and ``hf``.
"""
from __future__ import annotations

import functools
from typing import Sequence

from camel_jax.data import chat_format

FORMATS = ("tulu", "hf", "none")


def _messages(prompt: str | Sequence[dict]) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not prompt:
        raise ValueError("empty conversation: no message")
    return list(prompt)


@functools.lru_cache(maxsize=8)
def _auto_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def hf_tokenizer(tokenizer):
    """The transformers tokenizer behind a camel_jax Tokenizer; for a SentencePiece one (which camel_jax runs
    without transformers, model/tokenizer.py) the same folder loaded by AutoTokenizer, only for its template."""
    hf = getattr(tokenizer, "_hf", None)
    return hf if hf is not None else _auto_tokenizer(tokenizer.path)


def encode_prompt(prompt: str | Sequence[dict], fmt: str, tokenizer, *, newline_after_eos: bool = False,
                  add_bos: bool = True) -> list[int]:
    """Token ids a generation starts from. `tokenizer` is a `camel_jax.model.tokenizer.Tokenizer`;
    newline_after_eos (tulu only) as in training (data/chat_format.py); add_bos: tulu and none (an hf template
    writes its own BOS, or none)."""
    if fmt == "tulu":
        return chat_format.encode_prompt(tokenizer, _messages(prompt), newline_after_eos=newline_after_eos,
                                         add_bos=add_bos)
    if fmt == "hf":
        hf = hf_tokenizer(tokenizer)
        if not getattr(hf, "chat_template", None):
            raise ValueError(f"the tokenizer at {tokenizer.path} has no chat_template; use --chat_format tulu or none")
        return list(hf.apply_chat_template(_messages(prompt), tokenize=True, add_generation_prompt=True,
                                           return_dict=False))
    if fmt == "none":
        if not isinstance(prompt, str):
            msgs = _messages(prompt)
            if len(msgs) != 1:
                raise ValueError(f"chat format 'none' takes raw text or a single message, got {len(msgs)} messages")
            prompt = msgs[0]["content"]
        return tokenizer.encode(prompt, add_bos=add_bos and tokenizer.bos_id is not None and tokenizer.bos_id >= 0)
    raise ValueError(f"unknown chat format {fmt!r}; expected one of {FORMATS}")
