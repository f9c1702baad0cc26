"""infer.openai_logprobs on real tokenizers: token strings concatenate to the text and token bytes to its UTF-8
(characters split over SmolLM2's byte-level BPE tokens and LLaMA's byte-fallback pieces), the bytes being each
token's own; a stop's cut keeps the tokens that begin before it; a streamed Tracker equals the whole one."""
import numpy as np
import pytest

from camel_jax.infer import openai_logprobs as olp
from camel_jax.model.tokenizer import load_tokenizer

TEXT = "Café ☕ naïve — 東京 🚀 and ünïcödé 😀😃 everywhere!"


@pytest.fixture(params=["smollm2", "llama"])
def tok(request, shared_data):
    if request.param == "smollm2":
        return load_tokenizer(request.getfixturevalue("smollm2").tokenizer_dir)
    return load_tokenizer(str(shared_data / "llama_tokenizer"))


def test_pieces_and_bytes_concatenate_to_the_text(tok):
    ctx = tok.encode("Hi")
    ids = ctx + tok.encode(" " + TEXT)[1 if tok.id_to_piece(tok.encode(" x")[0]) == "▁" else 0:]
    want = tok.decode(ids)[len(tok.decode(ctx)):]
    pieces, _ = olp.piece_texts(tok, ids, len(ctx))
    assert "".join(pieces) == want and "" in pieces  # a split character: its first tokens read ""
    raw = [olp.token_bytes(tok, t, p) for t, p in zip(ids[len(ctx):], pieces)]
    assert b"".join(bytes(b) for b in raw) == want.encode()
    assert any(len(b) and not bytes(b).decode(errors="ignore") for b in raw)  # a token that is half a character


def test_tracker_streamed_equals_whole_and_stops_cut(tok):
    """Fake scores (the formatting is what is tested; scoring.py is tested against transformers)."""
    prompt = tok.encode("Hi")
    ids = tok.encode(" " + TEXT)
    rng = np.random.default_rng(0)

    def score(seq):
        n = len(seq) - 1
        return (rng.normal(size=n).astype(np.float32) * 0 - np.arange(n, dtype=np.float32),
                -np.tile(np.arange(20, dtype=np.float32), (n, 1)), np.tile(np.arange(20), (n, 1)))

    text = "".join(olp.piece_texts(tok, prompt + ids, len(prompt))[0])
    for fmt in ("chat", "legacy"):
        whole = olp.Tracker(tok, score, prompt, fmt, 3, offset=7)
        whole.add(ids)
        one = whole.take(whole.ready(len(text)))
        parts, t = [], olp.Tracker(tok, score, prompt, fmt, 3, offset=7)
        for k in range(0, len(ids), 3):
            t.add(ids[k:k + 3])
            n = t.ready(sum(len(p) for p in t.pieces[:-1]))  # as if the newest token's text were not shown yet
            parts.append(t.take(n) if n else None)
        parts.append(t.take(t.ready(len(text))))
        merged = None
        for p in parts:
            merged = olp.joined(fmt, merged, p)
        assert merged == one
        entries = one["content"] if fmt == "chat" else one["tokens"]
        assert len(entries) == len(ids)
        if fmt == "legacy":
            assert one["text_offset"][0] == 7 and one["token_logprobs"][:2] == [-len(prompt) + 1.0, -len(prompt)]
    cut = text.find("東京")
    t = olp.Tracker(tok, score, prompt, "chat", 0)
    t.add(ids)
    kept = t.take(t.ready(cut))["content"]
    assert "".join(e["token"] for e in kept).startswith(text[:cut]) and len(
        "".join(e["token"] for e in kept[:-1])) < cut
