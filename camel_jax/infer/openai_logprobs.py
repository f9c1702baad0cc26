"""OpenAI's two logprobs objects built from scored tokens: the legacy one of `/v1/completions` (tokens,
token_logprobs, top_logprobs, text_offset) and the chat one (`content: [{token, logprob, bytes, top_logprobs}]`).

The log-probs are the model's raw log-softmax (temperature 1, no top-k/top-p), as OpenAI reports them, from one
Scorer forward over prompt + answer (infer/scoring.py), whatever temperature sampled the answer.

Token strings are differences of running text decoded over a window of ~PIECE_WINDOW tokens before the token (the
same for a whole answer and for one streamed piece of it, so streamed lists concatenate to the plain ones); a
character split over tokens belongs to the token that completes it (the ones before it read ""), so the token
strings concatenate to the text. `bytes` are the token's own bytes in the vocabulary (SentencePiece pieces and
byte-fallback `<0xNN>`, byte-level BPE's byte alphabet), so a split character's bytes are where the model put
them; for any other tokenizer they are the UTF-8 of the token string.
"""
from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np

from camel_jax.infer.driver import window_start

PIECE_WINDOW = 6  # tokens of context when decoding one token's text (enough for any merge across tokens)
CHAT_TOP = 20  # OpenAI's top_logprobs maximum on /v1/chat/completions
LEGACY_TOP = 5  # and its `logprobs` maximum on /v1/completions
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each of the 256 bytes is one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _vocab_kind(tok) -> str:
    sp, hf = getattr(tok, "_sp", None), getattr(tok, "_hf", None)
    if sp is not None:
        return "sentencepiece"
    try:
        if str(hf.backend_tokenizer.decoder).startswith("ByteLevel"):
            return "bytelevel"
    except AttributeError:
        pass
    return "text"


def token_bytes(tok, token_id: int, text: str) -> list[int]:
    """The bytes of one token as its vocabulary holds them (`text`, its decoded string, for other tokenizers)."""
    kind = _vocab_kind(tok)
    if kind == "sentencepiece":
        sp = tok._sp
        if sp.is_control(token_id) or sp.is_unknown(token_id):
            return list(text.encode())
        piece = sp.id_to_piece(token_id)
        m = _BYTE_PIECE.fullmatch(piece)
        return [int(m.group(1), 16)] if m else list(piece.replace("\u2581", " ").encode())
    if kind == "bytelevel" and token_id not in tok._hf.all_special_ids:
        dec, piece = _byte_decoder(), tok.id_to_piece(token_id)
        if all(c in dec for c in piece):
            return [dec[c] for c in piece]
    return list(text.encode())


def piece_texts(tok, ids: Sequence[int], start: int, end: int | None = None,
                alternatives: Sequence[Sequence[int]] | None = None) -> tuple[list[str], list[list[str]]]:
    """Text of ids[i] for start <= i < end, and of each alternative at position i (in place of ids[i])."""
    pieces, alts = [], []
    for i in range(start, len(ids) if end is None else end):
        ctx = list(ids[window_start(tok.decode, ids, i, PIECE_WINDOW):i])
        head = tok.decode(ctx).rstrip("\ufffd") if ctx else ""
        pieces.append(tok.decode(ctx + [int(ids[i])]).rstrip("\ufffd")[len(head):])
        if alternatives is not None:
            alts.append([tok.decode(ctx + [int(a)])[len(head):] for a in alternatives[i - start]])
    return pieces, alts


def kept(pieces: Sequence[str], text_len: int, start_at: int = 0) -> int:
    """How many of `pieces` (the answer's, its first beginning at character start_at) begin inside a text of
    text_len characters: the tokens past a stop string's cut are dropped."""
    at, n = start_at, 0
    for p in pieces:
        if at >= text_len:
            break
        at, n = at + len(p), n + 1
    return n


def legacy(tok, seq: Sequence[int], scored, start: int, end: int, top: int, offset: int) -> dict:
    """The legacy object for positions start..end-1 of seq (position 0: no log-prob, as OpenAI's echo), text
    offsets from `offset`. scored: Scorer.sequence_logprobs' (lp, top_lp, top_id) for a prefix of seq >= end."""
    lp, top_lp, top_id = scored
    alts = [top_id[i - 1, :top].tolist() if i > 0 else [] for i in range(start, end)]
    pieces, alt_texts = piece_texts(tok, seq, start, end, alts)
    out = {"tokens": pieces, "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for j, i in enumerate(range(start, end)):
        out["text_offset"].append(offset)
        offset += len(pieces[j])
        out["token_logprobs"].append(None if i == 0 else float(lp[i - 1]))
        if i == 0:
            out["top_logprobs"].append(None)
            continue
        d: dict[str, float] = {}
        for t, v in zip(alt_texts[j], top_lp[i - 1, :top].tolist()):
            d[t] = max(d.get(t, -float("inf")), float(v))
        out["top_logprobs"].append(d)
    return out


def chat(tok, seq: Sequence[int], scored, start: int, end: int, top: int) -> list[dict]:
    """The chat object's `content` entries for positions start..end-1 of seq (start >= 1)."""
    lp, top_lp, top_id = scored
    alts = [top_id[i - 1, :top].tolist() for i in range(start, end)]
    pieces, alt_texts = piece_texts(tok, seq, start, end, alts)
    out = []
    for j, i in enumerate(range(start, end)):
        tops = [{"token": t, "logprob": float(v), "bytes": token_bytes(tok, int(a), t)}
                for t, v, a in zip(alt_texts[j], np.asarray(top_lp[i - 1, :top]).tolist(), alts[j])]
        out.append({"token": pieces[j], "logprob": float(lp[i - 1]),
                    "bytes": token_bytes(tok, int(seq[i]), pieces[j]), "top_logprobs": tops})
    return out


def joined(fmt: str, head: dict | None, rest: dict | None) -> dict:
    """Two pieces of one choice's logprobs object as one (either may be None: nothing there)."""
    if fmt == "chat":
        return {"content": (head or {"content": []})["content"] + (rest or {"content": []})["content"]}
    empty = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    head, rest = head or empty, rest or empty
    return {key: head[key] + rest[key] for key in empty}


class Tracker:
    """One choice's answer log-probs, sent in pieces (streamed) or at once: `add` the answer's tokens as they come;
    `ready(limit)` says how many unsent ones begin before character `limit` of the answer's text (what has been
    shown, or the final stop-cut text), `take(n)` scores and formats them (one forward over prompt + answer so
    far). fmt: "chat" or "legacy" (text offsets from `offset`, the echoed prompt's length)."""

    def __init__(self, tok, score, prompt: Sequence[int], fmt: str, top: int, offset: int = 0):
        self.tok, self.score, self.prompt, self.fmt, self.top, self.offset = tok, score, list(prompt), fmt, top, offset
        self.tokens: list[int] = []
        self.pieces: list[str] = []
        self.sent, self.at = 0, 0  # tokens sent, and where the next one's text begins in the answer

    def add(self, tokens: Sequence[int]) -> None:
        seq = self.prompt + self.tokens + [int(t) for t in tokens]
        self.pieces += piece_texts(self.tok, seq, len(self.prompt) + len(self.tokens))[0]
        self.tokens = seq[len(self.prompt):]

    def ready(self, limit: int) -> int:
        return kept(self.pieces[self.sent:], limit, self.at)

    def take(self, n: int) -> dict:
        seq = self.prompt + self.tokens[:self.sent + n]
        scored = self.score(seq)
        start, end = len(self.prompt) + self.sent, len(seq)
        if self.fmt == "chat":
            out = {"content": chat(self.tok, seq, scored, start, end, self.top)}
        else:
            out = legacy(self.tok, seq, scored, start, end, self.top, self.offset + self.at)
        self.at += sum(len(p) for p in self.pieces[self.sent:self.sent + n])
        self.sent += n
        return out
