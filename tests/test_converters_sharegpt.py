"""sharegpt: FastChat-style splitting to a token budget (reference quirks kept), role filter and mapping."""
import json
import random

import pytest

from camel_jax.data.converters.sharegpt import split_points
from camel_jax.data.prepare import convert_dataset
from camel_jax.data.records import RecordError
from conftest import TEST_DATA

FIXTURE = TEST_DATA / "raw" / "sharegpt.head4.json"


class WordTokenizer:
    """Length-only stand-in for tests of the splitting arithmetic: one id per word, plus BOS."""

    def encode(self, text, add_bos=False):
        return [1] * add_bos + [5] * len(text.split())


def _reference_split(lengths, max_length):
    """split_one_sample from open-instruct's scripts/split_sharegpt_conversations.py, on lengths."""
    lengths = lengths[: len(lengths) // 2 * 2]
    start_idx, cur_len, new = 0, 0, []
    if len(lengths) % 2 != 0 or len(lengths) < 2:
        return []
    for i in range(0, len(lengths), 2):
        tmp_len = lengths[i] + lengths[i + 1]
        if cur_len + tmp_len > max_length:
            new.append((start_idx, i))
            start_idx = i + 2 if tmp_len > max_length else i
            cur_len = 0
        elif i == len(lengths) - 2:
            new.append((start_idx, i + 2))
        cur_len += tmp_len
    return new


def test_split_points_equal_reference_on_random_lengths():
    rng = random.Random(0)
    for _ in range(2000):
        lengths = [rng.randint(7, 900) for _ in range(rng.randint(0, 15))]
        assert split_points(lengths, 2048) == _reference_split(lengths, 2048)


def test_split_quirks():
    assert split_points([1000, 1000, 30, 30], 2048) == [(0, 2)]  # split on the last pair drops it
    assert split_points([3000, 10, 20, 20], 2048) == [(0, 0), (2, 2)]  # too-long pair skipped -> empty chunks
    assert split_points([5, 5, 5], 2048) == [(0, 2)]  # odd turn count truncated
    assert split_points([5], 2048) == []


def test_fixture_conversion_and_roles():
    got, t = convert_dataset("sharegpt", str(FIXTURE), tokenizer=WordTokenizer())
    raw = json.loads(FIXTURE.read_text())
    assert [g["id"] for g in got] == [f"sharegpt_{r['id']}_0" for r in raw[:3]]
    assert got[0]["messages"] == [{"role": {"human": "user", "gpt": "assistant"}[c["from"]], "content": c["value"]}
                                  for c in raw[0]["conversations"]]
    assert t.read == 4 and t.converted == 3 and dict(t.dropped) == {"too_short": 1}
    # a budget of 60 words splits the 4-turn conversations into pairs
    small, _ = convert_dataset("sharegpt", str(FIXTURE), tokenizer=WordTokenizer(), max_length=60)
    assert all(len(g["messages"]) <= 2 for g in small)
    presplit, _ = convert_dataset("sharegpt", str(FIXTURE), no_split=True)  # no tokenizer needed
    assert [g["id"] for g in presplit] == [f"sharegpt_{r['id']}" for r in raw[:3]]
    assert [g["messages"] for g in presplit] == [g["messages"] for g in got]


def test_bad_records(tmp_path):
    raw = json.loads(FIXTURE.read_text())
    bad = [raw[0], {"id": "x1", "conversations": []}, {"id": "x2", "conversations": [{"from": "bot", "value": "v"}]},
           {"id": "x3", "conversations": [{"from": "human"}]}, {"conversations": []}, raw[2]]
    p = tmp_path / "s.json"
    p.write_text(json.dumps(bad, indent=2))
    with pytest.raises(RecordError, match=r"s\.json: record 2 \(line \d+\): unknown_role: turn 0 is from 'bot'"):
        convert_dataset("sharegpt", str(p), tokenizer=WordTokenizer())
    got, t = convert_dataset("sharegpt", str(p), tokenizer=WordTokenizer(), skip_bad_records=True)
    assert len(got) == 2 and t.read == 6
    assert dict(t.bad) == {"unknown_role": 1, "missing_field": 2}
    assert dict(t.dropped) == {"empty_conversation": 1}  # the reference's own rule: dropped, and counted
    sys_conv = {"id": "s", "conversations": [{"from": "system", "value": "a"}, {"from": "human", "value": "b"},
                                             {"from": "gpt", "value": "c"}, {"from": "human", "value": "d"}]}
    p.write_text(json.dumps([sys_conv]))
    got, t = convert_dataset("sharegpt", str(p), tokenizer=WordTokenizer())
    assert got == [] and dict(t.dropped) == {"no_valid_chunk": 1}


def test_listing_order_independent(tmp_path):
    raw = json.loads(FIXTURE.read_text())
    (tmp_path / "b.json").write_text(json.dumps(raw[:2]))
    (tmp_path / "a.json").write_text(json.dumps(raw[2:]))
    got, _ = convert_dataset("sharegpt", str(tmp_path), tokenizer=WordTokenizer())
    assert [g["id"] for g in got] == ["sharegpt_J410gdS_0_0", "sharegpt_UGg8d44_0_0", "sharegpt_Dk6qZaf_0_0"]


def test_real_sample_with_llama_tokenizer(shared_data, tmp_path):
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(str(shared_data / "llama_tokenizer"))
    src = json.loads((shared_data / "sharegpt" / "ShareGPT_V3_unfiltered_cleaned_split.head.json").read_text())
    head = tmp_path / "head.json"
    head.write_text(json.dumps(src[:120] + [src[141]]))
    got, t = convert_dataset("sharegpt", str(head), tokenizer=tok, max_length=1024)
    assert t.read == 121 and t.dropped["no_valid_chunk"] >= 1 and t.dropped["empty_conversation"] == 1
    assert not t.bad
    for g in got:
        roles = [m["role"] for m in g["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
        assert sum(len(tok.encode(m["content"], add_bos=True)) + 6 for m in g["messages"]) <= 1024
    again, _ = convert_dataset("sharegpt", str(head), tokenizer=str(shared_data / "llama_tokenizer"),
                               max_length=1024)
    assert again == got
    longer, _ = convert_dataset("sharegpt", str(head), tokenizer=tok, max_length=2048)
    assert len(longer) < len(got)
