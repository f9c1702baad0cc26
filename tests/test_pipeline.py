import json
import subprocess
import sys

import numpy as np
import pytest

from camel_jax.data.chat_format import encode_messages
from camel_jax.data.pipeline import TrainData, mixture_records, read_records
from camel_jax.model.tokenizer import load_tokenizer

T = 256


@pytest.fixture(scope="module")
def tok(shared_data):
    return load_tokenizer(str(shared_data / "llama_tokenizer"))


@pytest.fixture(scope="module")
def records(shared_data):
    """Real conversations from the raw Dolly and ShareGPT samples, in the unified format."""
    out = []
    for line in (shared_data / "dolly" / "databricks-dolly-15k.head34.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({"dataset": "dolly", "messages": [
            {"role": "user", "content": r["instruction"] + ("\n\n" + r["context"] if r["context"] else "")},
            {"role": "assistant", "content": r["response"]}]})
    raw = json.loads((shared_data / "sharegpt" / "ShareGPT_V3_unfiltered_cleaned_split.head.json").read_text())
    for item in raw[:60]:
        turns = item["conversations"]
        if turns and [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2):
            out.append({"dataset": "sharegpt", "messages": [
                {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns]})
    out.append({"dataset": "dolly", "messages": [{"role": "user", "content": "no answer"}]})  # dropped, counted
    return out


def _epoch(data, epoch):
    return [data.batch_at(epoch, s) for s in range(data.steps_per_epoch)]


def _segments(batches):
    """Every (inputs, targets, loss_mask) segment of the batches, as tuples."""
    out = []
    for b in batches:
        for r in range(b["inputs"].shape[0]):
            seg = b["segment_ids"][r]
            for s in range(1, seg.max() + 1):
                sel = seg == s
                assert (b["positions"][r][sel] == np.arange(sel.sum())).all()
                out.append((tuple(b["inputs"][r][sel]), tuple(b["targets"][r][sel]), tuple(b["loss_mask"][r][sel])))
    return out


def _expected_segments(tok, records):
    out = []
    for r in records:
        enc = encode_messages(tok, r["messages"], T)
        if enc is not None:
            ids, m = enc
            out.append((tuple(ids[:-1]), tuple(ids[1:]), tuple(m[1:].astype(np.float32))))
    return out


@pytest.mark.parametrize("packing", [False, True])
def test_epoch_holds_every_example_once_per_contract(tok, records, packing):
    data = TrainData(records, tok, max_seq_length=T, batch_size=8, packing=packing, seed=1, prefetch=0)
    assert data.drops["no_assistant_message"] == 1 and data.num_records == len(records)
    assert data.num_examples + data.drops.total_dropped() == len(records)  # every record accounted for
    batches = _epoch(data, 0)
    for b in batches:
        assert set(b) == {"inputs", "targets", "loss_mask", "segment_ids", "positions"}
        assert all(v.shape == (8, T) for v in b.values())
        assert b["inputs"].dtype == np.int32 and b["loss_mask"].dtype == np.float32
        assert ((b["segment_ids"] == 0) <= (b["loss_mask"] == 0)).all()
    assert sorted(_segments(batches)) == sorted(_expected_segments(tok, records))
    if packing:
        assert data.num_rows < data.num_examples and data.efficiency > 0.8
        assert max(b["segment_ids"].max() for b in batches) > 1
    else:
        assert data.num_rows == data.num_examples
        assert max(b["segment_ids"].max() for b in batches) == 1
    assert data.steps_per_epoch == -(-data.num_rows // 8)


def test_shuffle_is_seeded_and_differs_per_epoch(tok, records):
    a = TrainData(records, tok, max_seq_length=T, batch_size=4, packing=True, seed=7, prefetch=0)
    b = TrainData(records, tok, max_seq_length=T, batch_size=4, packing=True, seed=7, prefetch=0)
    c = TrainData(records, tok, max_seq_length=T, batch_size=4, packing=True, seed=8, prefetch=0)
    e0, e1 = _epoch(a, 0), _epoch(a, 1)
    assert all((x[k] == y[k]).all() for x, y in zip(e0, _epoch(b, 0)) for k in x)
    assert not all((x["inputs"] == y["inputs"]).all() for x, y in zip(e0, e1))
    assert not all((x["inputs"] == y["inputs"]).all() for x, y in zip(e0, _epoch(c, 0)))
    assert sorted(_segments(e0)) == sorted(_segments(e1))  # same examples, other order/grouping


def test_row_subsets_assemble_the_global_batch(tok, records):
    """Any split of the global batch's rows over processes (contiguous, strided, unsorted, all rows twice) yields
    exactly those rows, and the saved position resumes on another split at the same global batch."""
    full = TrainData(records, tok, max_seq_length=T, batch_size=8, packing=True, seed=3, prefetch=0)
    splits = [[[0, 1], [2, 3], [4, 5], [6, 7]], [[0, 4], [1, 5], [2, 6], [3, 7]], [[7, 2, 5], [0, 6, 1, 3, 4]],
              [list(range(8))] * 2]
    for step in (0, full.steps_per_epoch - 1):
        want = full.batch_at(1, step)
        for split in splits:
            for rows in split:
                got = full.batch_at(1, step, rows)
                assert all(g.shape == (len(rows), T) for g in got.values())
                for k in want:
                    np.testing.assert_array_equal(got[k], want[k][rows])
    with pytest.raises(IndexError, match="outside a global batch of 8"):
        full.batch_at(0, 0, [8])
    # a position saved by a run on one layout resumes another layout at the same global batch, for several batches
    with full.iterator() as it:
        for _ in range(full.steps_per_epoch - 1):  # the next two batches cross into epoch 1
            next(it)
        state = it.get_state()
        want = [next(it), next(it)]
    assert json.loads(json.dumps(state)) == state and state["step"] == full.steps_per_epoch - 1
    full.prefetch = 2  # the resumed iterators build their rows in the background thread
    for rows in splits[1] + splits[2]:
        with full.iterator(state, rows=rows) as it:
            got = [next(it), next(it)]
            assert it.get_state() == {**state, "epoch": 1, "step": 1}
        for g, w in zip(got, want):
            for k in w:
                np.testing.assert_array_equal(g[k], w[k][rows])


@pytest.mark.parametrize("prefetch", [0, 3])
def test_iterator_resumes_bitwise(tok, records, prefetch):
    data = TrainData(records, tok, max_seq_length=T, batch_size=8, packing=True, seed=5, prefetch=prefetch)
    n = data.steps_per_epoch + 3  # crosses an epoch boundary
    with data.iterator() as it:
        ref = [next(it) for _ in range(n)]
    with data.iterator() as it:
        for _ in range(data.steps_per_epoch - 1):
            next(it)
        state = json.loads(json.dumps(it.get_state()))
    assert state["epoch"] == 0 and state["step"] == data.steps_per_epoch - 1
    again = TrainData(records, tok, max_seq_length=T, batch_size=8, packing=True, seed=5, prefetch=prefetch)
    with again.iterator(state) as it:
        rest = [next(it) for _ in range(4)]
        assert it.get_state()["epoch"] == 1
    for x, y in zip(ref[data.steps_per_epoch - 1:], rest):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    other = TrainData(records, tok, max_seq_length=T, batch_size=4, packing=True, seed=5)
    with pytest.raises(ValueError, match="saved for different data"):
        other.iterator(state)


def test_num_epochs_and_filler_rows(tok, records):
    data = TrainData(records, tok, max_seq_length=T, batch_size=16, packing=False, seed=0)
    assert data.num_rows % 16  # so the last batch needs filler rows
    with data.iterator(num_epochs=1) as it:
        batches = list(it)
    assert len(batches) == data.steps_per_epoch
    assert (batches[-1]["segment_ids"][data.num_rows % 16:] == 0).all()
    dropped = TrainData(records, tok, max_seq_length=T, batch_size=16, packing=False, drop_remainder=True)
    assert dropped.steps_per_epoch == data.num_rows // 16


def test_jsonl_sources_cache_and_bad_lines(tok, records, tmp_path, monkeypatch):
    d = tmp_path / "prepared"
    d.mkdir()
    for name in ("dolly", "sharegpt"):
        with open(d / f"{name}.jsonl", "w") as f:
            for r in records:
                if r["dataset"] == name:
                    f.write(json.dumps(r) + "\n")
    monkeypatch.setenv("CAMEL_JAX_DATA_DIR", str(d))
    recs = mixture_records("tulu_sharegpt")
    assert [r["messages"] for r in recs] == [r["messages"] for r in records if r["dataset"] == "sharegpt"]
    cache = tmp_path / "cache"
    a = TrainData([str(d / "dolly.jsonl"), str(d / "sharegpt.jsonl")], tok, max_seq_length=T, batch_size=4,
                  cache_dir=str(cache))
    assert len(list(cache.glob("tokens-*.npz"))) == 1
    b = TrainData([str(d / "dolly.jsonl"), str(d / "sharegpt.jsonl")], tok, max_seq_length=T, batch_size=4,
                  cache_dir=str(cache))
    assert a.fingerprint == b.fingerprint and b.drops == a.drops
    np.testing.assert_array_equal(a.batch_at(0, 2)["targets"], b.batch_at(0, 2)["targets"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "a"}]}\n{"messages": [{"role": "bot", '
                   '"content": "x"}]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: unknown_role"):
        read_records(str(bad))
    bad.write_text('{"messages": []}\n\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 1: empty_conversation"):
        read_records(str(bad))


def test_by_rate_selection(tok, records):
    data = TrainData(records, tok, max_seq_length=T, batch_size=4, by_rate=True, rates="dolly:3,sharegpt:1", seed=2)
    names = np.array(data.dataset_names)[data.dataset_idx[data.selection]]
    n = data.num_examples
    assert n == len(data.examples)
    assert (names == "dolly").sum() == round(0.75 * n)
    equal = TrainData(records, tok, max_seq_length=T, batch_size=4, by_rate=True, seed=2)
    names = np.array(equal.dataset_names)[equal.dataset_idx[equal.selection]]
    assert abs((names == "dolly").sum() - (names == "sharegpt").sum()) <= 1


def test_importing_pipeline_keeps_tensorflow_out():
    code = "import sys, camel_jax.data.pipeline; print(sorted(m for m in ('tensorflow', 'seqio', 'torch', 'jax') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stats_cli(tok, records, tmp_path, capsys, shared_data):
    from camel_jax.data.stats import main as stats_main

    path = tmp_path / "mix.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert stats_main(["--mixture", str(path), "--tokenizer", str(shared_data / "llama_tokenizer"),
                       "--max_seq_length", str(T), "--batch_size", "8"]) == 0
    out = capsys.readouterr().out
    data = TrainData(records, tok, max_seq_length=T, batch_size=8, packing=True)
    assert data.describe() in out
    kept = {n: int((np.asarray(data.dataset_names)[data.dataset_idx] == n).sum()) for n in ("dolly", "sharegpt")}
    assert "no_assistant_message=1" in out and f"dolly={kept['dolly']}, sharegpt={kept['sharegpt']}" in out


def test_parallel_tokenization_is_identical(tok, records):
    from camel_jax.data.pipeline import tokenize_records

    a = tokenize_records(records, tok, T, num_workers=0)
    b = tokenize_records(records, tok, T, num_workers=2)
    for x, y in zip(a[0].__dict__.values(), b[0].__dict__.values()):
        np.testing.assert_array_equal(x, y)
    assert a[1].tolist() == b[1].tolist() and a[2] == b[2] and a[3] == b[3]
    with pytest.raises(ValueError, match="record 1: expected a dict with 'messages'"):
        tokenize_records([records[0], {"msgs": []}], tok, T)
