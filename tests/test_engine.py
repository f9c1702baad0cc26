"""infer.engine: greedy output equals generate and a full recompute; a request's tokens (greedy, or sampled with a
seed) are the same whatever the slot count, its neighbours and their lengths; slots are refilled as rows end; n
samples; stop sequences (as ids on device, as text spanning tokens on the host); EOS; bad requests are refused;
sampling parameters compile nothing new; meshes and bf16."""
import jax
import numpy as np
import pytest

from camel_jax.generate import greedy_generate
from camel_jax.infer.engine import Engine, Request
from camel_jax.model.config import get_preset
from camel_jax.model.llama import init_params
from camel_jax.model.mesh import build_mesh

CFG = get_preset("tiny-gqa", dtype="float32")
PROMPTS = [[1, 17, 42, 99, 3], [1, 200], [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22]]
SAMPLED = Request([1, 33, 4, 90, 12, 7], 10, temperature=1.0, top_p=0.9, top_k=50, seed=3)


@pytest.fixture(scope="module")
def params():
    # Scaled-up weights give peaked, well-separated logits, so argmax ties cannot flip between code paths.
    p = jax.jit(lambda k: init_params(CFG, k))(jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: x * 4.0 if x.ndim > 1 else x, p)


def _engine(params, cfg=CFG, **kw):
    return Engine(params, cfg, **{"slots": 3, "window_block": 16, **kw})


def _fillers(seed, count):
    rng = np.random.default_rng(seed)
    return [Request([1] + rng.integers(2, 250, int(rng.integers(1, 40))).tolist(), int(rng.integers(1, 20)),
                    ignore_eos=True, temperature=float(rng.choice([0.0, 0.8])), seed=int(rng.integers(100)))
            for _ in range(count)]


def test_greedy_equals_generate_and_full_recompute(params):
    from test_generate import uncached_greedy

    out = _engine(params, slots=2).run([Request(p, 12, ignore_eos=True) for p in PROMPTS])
    assert [o[0].tokens for o in out] == [greedy_generate(params, CFG, [p], 12, eos_id=-1)[0] for p in PROMPTS]
    assert out[0][0].tokens == uncached_greedy(params, PROMPTS[0], 12)
    assert all(o[0].finish_reason == "length" and o[0].text is None for o in out)


def test_batch_invariance_over_slots_neighbours_and_lengths(params):
    targets = [Request(PROMPTS[2], 14, ignore_eos=True), SAMPLED]
    alone = [_engine(params, slots=1).run([t])[0][0].tokens for t in targets]
    for slots, seed, at in ((1, 0, 1), (3, 1, 2), (8, 2, 5)):
        fillers = _fillers(seed, 9)
        reqs = fillers[:at] + [targets[0]] + fillers[at:at + 3] + [targets[1]] + fillers[at + 3:]
        out = _engine(params, slots=slots).run(reqs)
        got = [out[at][0].tokens, out[at + 4][0].tokens]
        assert got == alone, f"slots={slots}"


def test_a_finished_slot_is_refilled_at_once(params):
    eng = _engine(params, slots=2)
    for r in [Request(PROMPTS[0], 40, ignore_eos=True)] + [Request(p, 3, ignore_eos=True) for p in PROMPTS * 2]:
        eng.submit(r)
    steps = 0
    while eng.step():
        steps += 1
    # The long answer takes 39 steps after its first token; the six short ones pass through the other slot meanwhile.
    assert steps == 39
    assert [len(r[0].tokens) for r in eng.run()] == [40] + [3] * 6


def test_n_samples_are_seeded_per_sample(params):
    req = Request(PROMPTS[1], 8, temperature=1.0, n=4, seed=11, ignore_eos=True)
    out = _engine(params, slots=3).run([req])[0]
    assert len(out) == 4 and len({tuple(o.tokens) for o in out}) > 1
    again = _engine(params, slots=2).run([_fillers(5, 1)[0], req])[1]
    assert [o.tokens for o in again] == [o.tokens for o in out]


class CharTokenizer:
    """Id i decodes to a short piece of letters; stop strings are not encodable (host text checks only)."""
    eos_id = 255

    @staticmethod
    def piece(i):
        return "abcdefghij"[i % 10] * (1 + i % 3)

    def decode(self, ids):
        return "".join(self.piece(i) for i in ids)

    def encode(self, text, add_bos=False):
        return []


def test_stop_sequences(params):
    full = _engine(params, slots=1).run([Request(PROMPTS[0], 12, ignore_eos=True)])[0][0].tokens
    tok = CharTokenizer()
    # A stop string across the boundary of tokens 3 and 4: cut exactly before it in the text.
    stop = tok.piece(full[3])[-1] + tok.piece(full[4])[0]
    text = tok.decode(full)
    m = next(m for m in range(1, 13) if stop in tok.decode(full[:m]))
    eng = _engine(params, slots=1, tokenizer=tok)
    out = eng.run([Request(PROMPTS[0], 12, ignore_eos=True, stop=[stop, "zzz"]), Request(PROMPTS[1], 3)])
    assert out[0][0].finish_reason == "stop" and out[0][0].text == text[:text.find(stop)]
    assert out[0][0].tokens == full[:m]
    assert len(out[1][0].tokens) == 3  # the slot freed on the host was refilled
    # Stop token ids, matched on device: the row ends with them, the text stops before them.
    ids = _engine(params, slots=1, tokenizer=tok).run([Request(PROMPTS[0], 12, ignore_eos=True,
                                                               stop_token_ids=[full[5:7], [254, 253]])])[0][0]
    first = next(i for i in range(12) if full[i:i + 2] == full[5:7])
    assert ids.tokens == full[:first + 2] and ids.finish_reason == "stop"
    assert ids.text == tok.decode(full[:first])


def test_a_stop_string_late_in_a_long_answer(params):
    """Past the first few tokens only the newest tokens' text is searched each step (engine._tail_text): a stop
    string spanning two tokens far into the answer still ends it there, cut exactly, as a whole-text search would."""
    full = _engine(params, slots=1).run([Request(PROMPTS[1], 60, ignore_eos=True)])[0][0].tokens
    tok = CharTokenizer()
    text = tok.decode(full)
    k, stop = next((k, s) for k in range(30, 59) for s in [tok.piece(full[k])[-1] + tok.piece(full[k + 1])[0]]
                   if s not in tok.decode(full[:k + 1]))
    m = next(m for m in range(1, 61) if stop in tok.decode(full[:m]))
    assert m == k + 2 > 4 * len(stop) + 4 + 1  # beyond the searched tail's length
    out = _engine(params, slots=1, tokenizer=tok).run([Request(PROMPTS[1], 60, ignore_eos=True, stop=[stop])])
    assert out[0][0].finish_reason == "stop" and out[0][0].tokens == full[:m]
    assert out[0][0].text == text[:text.find(stop)]


def test_eos_ends_a_row_and_is_not_returned(params):
    full = _engine(params, slots=1).run([Request(PROMPTS[0], 12, ignore_eos=True)])[0][0].tokens
    eos = full[3]
    out = _engine(params, slots=2, eos_id=eos).run([Request(PROMPTS[0], 12), Request(PROMPTS[0], 12,
                                                                                      ignore_eos=True)])
    assert out[0][0].tokens == full[:full.index(eos)] and out[0][0].finish_reason == "eos"
    assert out[1][0].tokens == full


def test_bad_requests_are_refused(params):
    eng = _engine(params, slots=2, max_len=64)
    with pytest.raises(ValueError, match=r"prompt \(18 tokens\) \+ max_new_tokens \(50\) exceeds .* 64"):
        eng.submit(Request(PROMPTS[2], 50))
    for bad in (Request([]), Request([1, 300]), Request([1], 0), Request([1], temperature=-1),
                Request([1], top_p=0.0), Request([1], n=0), Request([1], stop=["x"])):
        with pytest.raises(ValueError):
            eng.submit(bad)
    rid = eng.submit(Request(PROMPTS[0], 4))
    with pytest.raises(IndexError, match="not a free slot"):
        eng.insert(2, rid, 0)
    eng.insert(1, rid, 0)
    with pytest.raises(IndexError, match="not a free slot"):
        eng.insert(1, rid, 0)


def test_compaction_runs_the_last_rows_alone_and_grows_back(params):
    """One long answer among short ones: once the queue is empty it runs in a batch of 1 (then in 4 slots again
    when three requests queue), with every token what an engine that never compacts gives."""
    reqs = [Request(PROMPTS[0], 30, ignore_eos=True)] + [Request(p, 3, ignore_eos=True) for p in PROMPTS[1:]] + \
        [SAMPLED]
    plain = _engine(params, slots=4, compact=False).run(reqs)
    eng = _engine(params, slots=4)
    assert eng.row_counts == (4, 2, 1)
    for r in reqs:
        eng.submit(r)
    rows = []
    while eng.step():
        rows.append(eng.rows)
    assert rows[0] == 4 and rows[-1] == 1 and rows == sorted(rows, reverse=True)
    assert [[c.tokens for c in o] for o in eng.run()] == [[c.tokens for c in o] for o in plain]
    late = [Request(p, 5 + i, ignore_eos=True) for i, p in enumerate(PROMPTS)]
    ids = [eng.submit(r) for r in late]
    eng.step()
    assert eng.rows == 4  # grown back for the three queued requests
    while eng.step():
        pass
    assert [eng.results(i)[0].tokens for i in ids] == [o[0].tokens for o in _engine(params, slots=1).run(late)]


def test_sampling_parameters_compile_nothing_new(params):
    eng = _engine(params, slots=3)
    programs = (eng._step, eng._prefill, eng._insert)  # shared by the module's engines of this config
    before = [p._cache_size() for p in programs]
    reqs = [Request(PROMPTS[i % 2], 3 + i, temperature=0.3 * (i % 4), top_k=i % 3, top_p=1 - 0.1 * (i % 5),
                    seed=i, n=1 + i % 2) for i in range(8)]
    eng.run(reqs)
    assert all(p._cache_size() - b <= 1 for p, b in zip(programs, before))  # one shape each, not one per request


def test_engines_of_one_config_share_their_compiled_programs(params):
    a, b = _engine(params, slots=2), _engine(params, slots=2)
    assert (a._prefill, a._insert, a._step) == (b._prefill, b._insert, b._step)
    first = a.run([Request(PROMPTS[0], 3)])
    sizes = [p._cache_size() for p in (a._prefill, a._insert, a._step)]
    assert b.run([Request(PROMPTS[0], 3)]) == first
    assert [p._cache_size() for p in (b._prefill, b._insert, b._step)] == sizes  # nothing compiled again


@pytest.fixture(scope="module")
def one_device(params):
    return _engine(params, slots=4).run([Request(p, 10, ignore_eos=True) for p in PROMPTS] + [SAMPLED])


@pytest.mark.parametrize("spec", ["dp2,mp2", "dp4", "mp2"])
def test_on_a_mesh_equals_one_device(params, one_device, spec):
    n = 2 if spec == "mp2" else 4
    mesh = build_mesh(spec, CFG, devices=jax.devices()[:n])
    eng = _engine(params, slots=4, mesh=mesh)
    out = eng.run([Request(p, 10, ignore_eos=True) for p in PROMPTS] + [SAMPLED])
    assert [o[0].tokens for o in out] == [o[0].tokens for o in one_device]
    for block in eng.cache[0]["k"]:  # the cache after the steps: kv heads, slots
        laid = tuple(block.sharding.spec) + (None,) * 4
        assert laid[:3] == ("mp" if "mp" in spec else None, "dp" if "dp" in spec else None, None)


def test_bfloat16_runs(params):
    cfg = CFG.replace(dtype="bfloat16")
    out = _engine(params, cfg, slots=2).run([Request(p, 8, ignore_eos=True) for p in PROMPTS])
    assert [o[0].tokens for o in out] == [greedy_generate(params, cfg, [p], 8, eos_id=-1)[0] for p in PROMPTS]
    assert _engine(params, cfg).weights["layers"][0]["attn"]["q"]["kernel"].dtype == np.dtype("bfloat16")


def test_programs_from_the_disk_store_run_untraced_and_give_the_same_tokens(params, tmp_path):
    """A second process's engine (fresh programs: engine._programs unwrapped) loads every executable the first
    stored (compile_cache.StoredJit) and decodes the very same tokens."""
    from camel_jax.infer import compile_cache, engine

    saved, compile_cache._PROGRAMS[0] = compile_cache._PROGRAMS[0], str(tmp_path)
    reqs = [Request(p, 6, ignore_eos=True) for p in PROMPTS] + [SAMPLED]
    outs, programs = [], []
    try:
        for _ in range(2):
            eng = _engine(params, slots=2)
            fresh = engine._programs.__wrapped__(CFG, "")
            eng._prefill, eng._insert, eng._step, eng._release, eng._take, eng._pad = fresh
            outs.append(eng.run(reqs))
            programs.append(fresh)
    finally:
        compile_cache._PROGRAMS[0] = saved
    assert outs[0] == outs[1]
    stored = sum(p.stored for p in programs[0])
    assert stored >= 4 and sum(p.loaded for p in programs[0]) == 0  # prefill/insert per bucket, steps, release...
    assert sum(p.loaded for p in programs[1]) == stored and sum(p.stored for p in programs[1]) == 0
