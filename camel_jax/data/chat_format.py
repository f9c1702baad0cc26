"""The TÜLU chat format and its loss mask, token for token as open-instruct's `encode_with_messages_format`.

Text template (open-instruct finetune.py, June 2023)::

    <|system|>\\n{system}\\n  <|user|>\\n{user}\\n  <|assistant|>\\n{assistant}</s>\\n   ... then the whole text .strip()

with BOS first, right truncation at `max_seq_length`, and loss on every assistant turn's content and its `</s>` only.
Examples left with no trainable token are dropped (None) and counted by reason in a `DropCounter`.

How it is built: the template's `</s>` is never written as characters. The text is cut at each `</s>`, every piece
is encoded on its own with `tokenizer.encode` and the EOS *id* is put between the pieces. That is exactly what a
Hugging Face tokenizer does with a special token inside a string (split, encode each side separately), so it gives
the same ids on the SentencePiece and the Hugging Face backends of `camel_jax.model.tokenizer.Tokenizer`. With
SentencePiece, message content is always text: a literal "</s>" or "<s>" typed inside a message stays characters
(open-instruct turned it into a control token; we deliberately do not, so data cannot inject EOS/BOS). A Hugging Face
tokenizer still applies its own special-token matching inside `encode`, as open-instruct did.

The mask mirrors open-instruct's own algorithm rather than an idealisation of it: for every non-assistant message i
it masks ``[len(tok(prefix_before_i)), len(tok(prefix_through_i + "<|assistant|>\\n")))`` (the header only when the
next message is the assistant's), with prefixes tokenized the same way as the full text. Prefix tokenization only
needs to happen inside the current `</s>`-delimited piece, so the cost stays linear in the conversation length.

Newline after a mid-conversation `</s>` — two behaviours exist (open_instruct.md §3.1 and §9):

* ``newline_after_eos=False`` (DEFAULT, the paper's models): transformers ≤ 4.33 registered `</s>` as a plain-str
  special token that strips whitespace on both sides, so the "\\n" after each mid-conversation `</s>` VANISHES:
  ``… 2, 529, 29989, 1792 …`` (`</s>` then `▁<|user|>`). This reproduces the TÜLU v1 training stream byte-for-byte.
* ``newline_after_eos=True``: what the same open-instruct code gives under transformers ≥ 4.34 (and 5.x with this
  repo's LLaMA tokenizer folder): the "\\n" survives as ``▁``, ``<0x0A>`` (``… 2, 29871, 13, 29966 …``), and — as
  open-instruct's prefix arithmetic implies — those two tokens are trained (they belong to the assistant message).

Single-turn conversations (most of the mix) are identical under both.

Inference shares this module: `encode_prompt` is the training stream's prefix up to the assistant header (what a
TÜLU model generates from; camel_jax/infer/chat.py), and `chat_template` the same format as a Hugging Face jinja
template, which `convert export-hf` installs as the tokenizer's so transformers' `apply_chat_template` reproduces
these ids (single- and multi-turn, both newline behaviours; tests/test_infer_chat.py names the cases it cannot).
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

ROLES = ("system", "user", "assistant")
_HEADER = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}
ASSISTANT_HEADER = _HEADER["assistant"]


class DropCounter(collections.Counter):
    """Counts dropped examples by reason (``no_assistant_message``, ``truncated_before_assistant``,
    ``no_trainable_tokens``), so that every input record is accounted for: kept + sum(drops) = read."""

    def total_dropped(self) -> int:
        return int(sum(self.values()))

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.items())) or "none"


def format_messages(messages: Sequence[dict], eos_token: str = "</s>") -> str:
    """The chat text as open-instruct writes it (for display and for tokenizers that take whole strings)."""
    return "".join(_message_text(m, eos_token, i) for i, m in enumerate(messages)).strip()


def _message_text(m: dict, eos_token: str, index: int) -> str:
    try:
        role, content = m["role"], m["content"]
    except (KeyError, TypeError):
        raise ValueError(f"message {index}: expected a dict with 'role' and 'content', got {m!r:.80}") from None
    if role not in _HEADER:
        raise ValueError(f"message {index}: unknown role {role!r}; expected one of {ROLES}")
    if not isinstance(content, str):
        raise ValueError(f"message {index}: content must be a string, got {type(content).__name__}")
    return _HEADER[role] + content.strip() + (eos_token if role == "assistant" else "") + "\n"


def _pieces(messages: Sequence[dict]):
    """Split the conversation at each assistant `</s>`.

    Yields (text, spans, trailing_eos): `text` is the characters between two `</s>` (before the global .strip()),
    `spans` the (role, start, end) character ranges of the messages inside it (end of a non-assistant message
    followed by an assistant message includes that "<|assistant|>\\n" header, as open-instruct masks it).
    """
    text, spans = "", []
    for i, m in enumerate(messages):
        body = _message_text(m, "", i)  # content + "\n" (no eos)
        role = m["role"]
        if role == "assistant":
            text += body[:-1]  # the eos goes between pieces, the "\n" after it starts the next piece
            spans.append((role, len(text) - len(body) + 1, len(text)))
            yield text, spans, True
            text, spans = "\n", []
        else:
            start = len(text)
            text += body
            end = len(text)
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            if isinstance(nxt, dict) and nxt.get("role") == "assistant":
                end += len(ASSISTANT_HEADER)
            spans.append((role, start, end))
    yield text, spans, False


def encode_messages(tokenizer, messages: Sequence[dict], max_seq_length: int, *,
                    newline_after_eos: bool = False, drops: DropCounter | None = None,
                    add_bos: bool = True):
    """Encode one conversation -> (ids int32 [n], label_mask int8 [n]) with n <= max_seq_length, or None.

    label_mask is 1 on tokens trained as targets (assistant content and its `</s>`), 0 elsewhere; it is the
    open-instruct `labels != -100`. None means no trainable token is left; the reason is counted in `drops`.
    Raises ValueError for an empty conversation, an unknown role or a malformed message.
    """
    if max_seq_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
    if not messages:
        raise ValueError("empty conversation: 'messages' has no message")
    eos = tokenizer.eos_id
    bos = tokenizer.bos_id if add_bos and tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else None
    pieces = list(_pieces(messages))
    # The global .strip() of open-instruct: nothing leads (text starts with "<|"), the tail loses its whitespace.
    last_text, last_spans, _ = pieces[-1]
    pieces[-1] = (last_text.rstrip(), last_spans, False)

    def enc(s: str, after_eos: bool, before_eos: bool) -> list[int]:
        return _encode_piece(tokenizer, s, after_eos, before_eos, newline_after_eos)

    ids: list[int] = [] if bos is None else [bos]
    masked: list[tuple[int, int]] = []
    for k, (text, spans, trailing_eos) in enumerate(pieces):
        base, after = len(ids), k > 0
        for role, start, end in spans:
            if role == "assistant":
                continue
            lo = 0 if (k == 0 and start == 0) else base + len(enc(text[:start], after, False))
            masked.append((lo, base + len(enc(text[:end], after, False))))
        ids += enc(text, after, trailing_eos)
        if trailing_eos:
            ids.append(eos)

    ids_arr = np.asarray(ids[:max_seq_length], dtype=np.int32)
    mask = np.ones(len(ids_arr), dtype=np.int8)
    for lo, hi in masked:
        mask[lo:hi] = 0
    if mask.any():
        return ids_arr, mask
    if drops is not None:
        if not any(m["role"] == "assistant" for m in messages):
            reason = "no_assistant_message"
        elif len(ids) > max_seq_length and _full_mask_any(ids, masked):
            reason = "truncated_before_assistant"
        else:
            reason = "no_trainable_tokens"
        drops[reason] += 1
    return None


def _encode_piece(tokenizer, s: str, after_eos: bool, before_eos: bool, newline_after_eos: bool) -> list[int]:
    if not newline_after_eos:  # transformers<=4.33: whitespace around a str special token is stripped
        if after_eos:
            s = s.lstrip()
        if before_eos:
            s = s.rstrip()
    return tokenizer.encode(s) if s else []


def encode_prompt(tokenizer, messages: Sequence[dict], *, newline_after_eos: bool = False,
                  add_bos: bool = True) -> list[int]:
    """The ids a generation starts from: the conversation (ending with any role) then the assistant header, i.e.
    exactly the prefix of the stream `encode_messages` trains on once the assistant's answer is appended.

    The stream is cut at every `</s>` and each piece encoded alone, as in training, so no piece boundary moves;
    the header's "\n" ends a piece (content is stripped, so the answer never starts with whitespace that could
    merge with it)."""
    if not messages:
        raise ValueError("empty conversation: 'messages' has no message")
    bos = tokenizer.bos_id if add_bos and tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else None
    ids: list[int] = [] if bos is None else [bos]
    pieces = list(_pieces(messages))
    for k, (text, _, trailing_eos) in enumerate(pieces):
        if not trailing_eos:
            text += ASSISTANT_HEADER
        ids += _encode_piece(tokenizer, text, k > 0, trailing_eos, newline_after_eos)
        if trailing_eos:
            ids.append(tokenizer.eos_id)
    return ids


def chat_template(newline_after_eos: bool = False) -> str:
    """The TÜLU format as a Hugging Face jinja `chat_template`: `apply_chat_template(messages, tokenize=True,
    add_generation_prompt=...)` gives `encode_messages`' ids (a conversation ending with the assistant) or
    `encode_prompt`'s (add_generation_prompt=True), on tokenizers whose pieces after a special token tokenize as
    on their own (SentencePiece LLaMA with legacy=True, byte-level BPE; tests/test_infer_chat.py). Without
    newline_after_eos no "\n" follows a `</s>` (the vanished newline of the paper's stream); the conversation's
    final whitespace is dropped as open-instruct's .strip() does."""
    after_eos = "'\\n'" if newline_after_eos else "''"
    return (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}"
        "{% set last = loop.last and not add_generation_prompt %}"
        "{% if message['role'] == 'assistant' %}"
        "{{ '<|assistant|>\\n' + message['content'] | trim + eos_token }}"
        "{% if not last %}{{ " + after_eos + " }}{% endif %}"
        "{% elif message['role'] in ['system', 'user'] %}"
        "{{ '<|' + message['role'] + '|>\\n' + message['content'] | trim }}{% if not last %}{{ '\\n' }}{% endif %}"
        "{% else %}{{ raise_exception('unknown role ' + message['role'] + '; expected system, user or assistant') }}"
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def _full_mask_any(ids: list[int], masked: list[tuple[int, int]]) -> bool:
    full = np.ones(len(ids), dtype=bool)
    for lo, hi in masked:
        full[lo:hi] = False
    return bool(full.any())


def supervised_text(tokenizer, ids: np.ndarray, mask: np.ndarray) -> list[str]:
    """Decode each contiguous trained span (debug/inspection helper; EOS shown as the tokenizer's eos string)."""
    out, cur = [], []
    for t, m in zip(ids.tolist(), mask.tolist()):
        if m:
            cur.append(t)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)

    def dec(span):
        text, run = "", []
        for t in span:
            if t == tokenizer.eos_id:
                text += tokenizer.decode(run) + tokenizer.eos_token
                run = []
            else:
                run.append(t)
        return text + tokenizer.decode(run)

    return [dec(s) for s in out]
