"""infer.driver: streamed text deltas concatenate to the engine's final text (stops cut exactly, nothing a stop later
removes is ever shown); cancelling frees the slots and queued samples at once; many threads and an asyncio loop
share one engine and each get the engine's own offline answer."""
import asyncio
import threading

import pytest

from camel_jax.infer.driver import Driver, TextDeltas
from camel_jax.infer.engine import Request
from camel_jax.model.tokenizer import load_tokenizer

STORY = "Once upon a time, there was a little girl"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One engine for every test (its programs compile once): offline runs and drivers take turns on it."""
    from stories_util import stories

    return stories(tmp_path_factory)[1]


def _requests(tok):
    p = tok.encode(STORY, add_bos=True)
    return [Request(p, 40), Request(tok.encode("The dog", add_bos=True), 30, temperature=0.9, n=2, seed=4),
            Request(p, 40, stop=["ly.", "ran"]), Request(p, 40, stop=["in the k", "!!"], temperature=1.0, seed=9)]


def test_text_deltas_hold_back_what_a_stop_may_cut():
    d = TextDeltas(lambda ids: "".join(chr(i) for i in ids), stops=["abc"], stop_ids=[[120, 121]])
    seq, shown = [ord(c) for c in "xxab"], []
    for k in range(1, 5):
        shown.append(d.update(seq[:k]))
    assert "".join(shown) == "xx"  # "ab" may begin "abc": held
    assert d.update(seq + [ord("d")]) == "abd"
    assert d.update(seq + [ord("d"), 120]) == ""  # 'x' may begin the stop ids [120, 121]
    assert d.update(seq + [ord("d"), 120, 65]) == "xA"
    assert d.finish("xxabdxA!") == "!"
    u = TextDeltas(lambda ids: "é"[:len(ids) - 1] + "\ufffd" * (len(ids) == 1))
    assert u.update([1]) == "" and u.update([1, 2]) == "é"  # half a character is never shown


def _offline(engine, reqs):
    rids = [engine.submit(r) for r in reqs]
    while engine.step():
        pass
    engine.pop_finished()
    return [engine.results(i) for i in rids]


def test_streamed_deltas_are_the_final_text(engine):
    tok = engine.tokenizer
    offline = _offline(engine, _requests(tok))
    with Driver(engine) as driver:
        handles = [driver.submit(r, stream=True) for r in _requests(tok)]
        for h, want in zip(handles, offline):
            texts, tokens = [""] * h.request.n, [[] for _ in range(h.request.n)]
            for ev in h.events():
                texts[ev.sample] += ev.text
                tokens[ev.sample] += ev.tokens
            assert [c.text for c in h.completions] == [c.text for c in want] == texts
            assert [c.tokens for c in h.completions] == [c.tokens for c in want] == tokens
    assert offline[2][0].finish_reason == "stop" and offline[3][0].finish_reason == "stop"
    assert driver.pending() == (0, 0, 0)


def test_cancel_frees_slots_and_queued_samples(engine):
    p = engine.tokenizer.encode(STORY, add_bos=True)
    with Driver(engine) as driver:
        long = driver.submit(Request(p, 200, ignore_eos=True, n=5))  # four slots busy, one sample queued
        next(long.events())
        long.cancel()
        after = driver.submit(Request(p, 5, ignore_eos=True))
        assert len(after.result()[0].tokens) == 5
        assert long.result() is not None and {c.finish_reason for c in long.completions} == {"cancelled"}
        assert all(len(c.tokens) < 200 for c in long.completions) and driver.cancelled == 1
        assert driver.pending() == (0, 0, 0)
        early = driver.submit(Request(p, 5))
        early.cancel()  # before or after it reached the engine: it ends either way
        assert early.result() is not None and driver.pending() == (0, 0, 0)


def test_threads_and_an_asyncio_loop_share_one_engine(engine):
    tok = engine.tokenizer
    reqs = [Request(tok.encode(STORY[:10 + 3 * i], add_bos=True), 8 + i, temperature=0.5 * (i % 3), seed=i)
            for i in range(8)]
    offline = [[c.tokens for c in cs] for cs in _offline(engine, reqs)]
    got = [None] * len(reqs)
    with Driver(engine) as driver:
        def ask(i):
            got[i] = [c.tokens for c in driver.submit(reqs[i]).result()]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        async def main():
            loop = asyncio.get_running_loop()
            hs = [driver.submit(r, stream=True, loop=loop) for r in reqs[:3]]
            return await asyncio.gather(*(h.aresult() for h in hs))

        looped = asyncio.run(main())
        with pytest.raises(ValueError, match="max_new_tokens"):
            driver.submit(Request([1], 0))
    assert got == offline
    assert [[c.tokens for c in cs] for cs in looped] == offline[:3]


def test_text_deltas_on_a_byte_level_bpe(smollm2):
    """SmolLM2's byte-level BPE splits characters over tokens: no delta shows half of one, and a stop spanning
    tokens is cut exactly."""
    tok = load_tokenizer(smollm2.tokenizer_dir)
    text = "Café ☕ naïve — 東京 🚀 and ünïcödé everywhere 🚀🚀!"
    ids = tok.encode(text)
    assert sum("\ufffd" in tok.decode(ids[:k]) for k in range(1, len(ids))) >= 5  # characters split over tokens
    for stops, want in (((), text), (["東京"], text[:text.find("東京")]), (["🚀🚀"], text[:text.find("🚀🚀")])):
        d = TextDeltas(tok.decode, stops)
        shown = []
        for k in range(1, len(ids) + 1):
            full = tok.decode(ids[:k])
            if any(s in full for s in stops):
                break
            shown.append(d.update(ids[:k]))
        assert not any("\ufffd" in s for s in shown)
        shown.append(d.finish(want))
        assert "".join(shown) == want and len(shown[-1]) < 8


class _WholeDecode:
    """The old TextDeltas (whole answer decoded per update, quadratic): the reference the incremental one equals."""

    def __init__(self, decode, stops=(), stop_ids=()):
        self.decode, self.stops, self.stop_ids, self.sent = decode, [s for s in stops if s], stop_ids, ""

    def update(self, tokens):
        held = max((j for s in self.stop_ids for j in range(1, min(len(s), len(tokens) + 1))
                    if tokens[len(tokens) - j:] == s[:j]), default=0)
        text = self.decode(tokens[:len(tokens) - held]).rstrip("\ufffd")
        longest = max((len(s) for s in self.stops), default=0)
        safe = text
        for i in range(max(0, len(text) - longest + 1), len(text)):
            if any(s.startswith(text[i:]) for s in self.stops):
                safe = text[:i]
                break
        if not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent):], safe
        return delta


MIXED = ("Café ☕ naïve — 東京 🚀 and ünïcödé everywhere 🚀🚀! The  quick\nbrown fox: “quoted” ‘text’, 12.5% "
         "of 東京都 and Ελληνικά and 😀😃😄 emoji runs, then plain words again for a while. ")


def _after(tok, ctx):
    """Decoding after one context token, as Engine.text does (a SentencePiece leading space survives)."""
    head = tok.decode([ctx])
    return lambda ids: tok.decode([ctx] + list(ids))[len(head):]


@pytest.mark.parametrize("which", ["smollm2", "llama"])
def test_incremental_deltas_equal_whole_decode(which, request, shared_data):
    """The linear TextDeltas gives the very deltas of the whole-decode one on SmolLM2's byte-level BPE (characters
    split over tokens) and LLaMA's SentencePiece (byte fallback, leading spaces), with stop strings and stop ids,
    while decoding a bounded number of tokens per update."""
    if which == "smollm2":
        tok = load_tokenizer(request.getfixturevalue("smollm2").tokenizer_dir)
    else:
        tok = load_tokenizer(str(shared_data / "llama_tokenizer"))
    ids = tok.encode(MIXED * 3)
    assert sum("\ufffd" in tok.decode(ids[:k]) for k in range(1, 200)) >= 5  # characters split over tokens
    decode = _after(tok, tok.encode("Hi")[-1])
    garbage = [i for i in range(tok.vocab_size) if tok.decode([i]) == "\ufffd"][:3] * 12  # invalid byte runs
    cases = [(ids, (), ()), (ids, ["東京都", "😄 e"], ()), (ids, ["zzz"], [tok.encode(" the")[-1:] + [5]]),
             (ids[:40] + garbage + ids[40:90], ["and Ε"], [ids[60:63]])]
    for seq, stops, stop_ids in cases:
        new, old = TextDeltas(decode, stops, stop_ids), _WholeDecode(decode, stops, stop_ids)
        most = 0
        for k in range(1, len(seq) + 1):
            before = new.decoded
            assert new.update(seq[:k]) == old.update(seq[:k]), (which, stops, k)
            most = max(most, new.decoded - before)
        # per update: a few context windows (each at most 3 * CONTEXT tokens, longer only to start on a
        # character) and the pending tokens; a constant, where the whole decode took up to len(seq) (~300) tokens
        bound = 12 * TextDeltas.CONTEXT + 2 * TextDeltas.MAX_PENDING + max((len(s) for s in stop_ids), default=0)
        assert most <= bound < len(seq) and new.decoded <= bound * len(seq) // 4
        if not stops and not stop_ids:  # everything shown, nothing lost, the end flushes only a held character
            final, shown = decode(seq), "".join(new._parts)
            assert shown + new.finish(final) == final and len(final) - len(shown) <= 1
