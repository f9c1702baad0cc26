"""baize: [|Human|]/[|AI|] transcripts to turns, reference file order, malformed and empty records."""
import json
import shutil

import pytest

from camel_jax.data.converters.baize import transcript_messages
from camel_jax.data.prepare import convert_dataset
from camel_jax.data.records import BadRecord, RecordError
from conftest import TEST_DATA

FIXTURE = TEST_DATA / "raw" / "quora_chat_data.ko.head3.json"


def _reference(record):
    messages = []
    for rnd in record["input"].split("[|Human|]")[1:]:
        if not rnd.strip() or "[|AI|]" not in rnd:
            continue
        human, assistant = rnd.split("[|AI|]")
        messages += [{"role": "user", "content": human.strip()}, {"role": "assistant", "content": assistant.strip()}]
    return messages


def test_turns_match_reference():
    recs = json.loads(FIXTURE.read_text())
    got, t = convert_dataset("baize", str(FIXTURE))
    assert [g["messages"] for g in got] == [_reference(r) for r in recs]
    assert [g["id"] for g in got] == ["baize_0", "baize_1", "baize_2"] and t.converted == 3
    for g in got:
        assert [m["role"] for m in g["messages"]] == ["user", "assistant"] * (len(g["messages"]) // 2)
        assert all("[|" not in m["content"] for m in g["messages"])


def test_transcript_edge_cases():
    sys_line = "The conversation between human and AI assistant.\n"
    assert transcript_messages({"input": sys_line + "[|Human|] hi\n[|AI|] hello\n[|Human|] "}) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(BadRecord, match="malformed_turns"):
        transcript_messages({"input": "[|Human|] a [|AI|] b [|AI|] c"})
    with pytest.raises(BadRecord, match="empty_conversation"):
        transcript_messages({"input": sys_line + "[|Human|] "})


def test_reference_file_order_not_listing_order(tmp_path):
    recs = json.loads(FIXTURE.read_text())
    for i, name in enumerate(["stackoverflow", "alpaca", "quora"]):  # created out of order
        (tmp_path / f"{name}_chat_data.json").write_text(json.dumps([recs[i]]))
    got, _ = convert_dataset("baize", str(tmp_path))
    assert [g["messages"] for g in got] == [_reference(recs[i]) for i in (1, 2, 0)]  # alpaca, quora, stackoverflow


def test_bad_records(tmp_path):
    recs = json.loads(FIXTURE.read_text())
    bad = [recs[0], {"topic": "x"}, {"input": "[|Human|] "}, recs[1]]
    p = tmp_path / "quora_chat_data.json"
    p.write_text(json.dumps(bad, indent=1))
    with pytest.raises(RecordError, match=r"quora_chat_data\.json: record 1 \(line \d+\): missing_field"):
        convert_dataset("baize", str(tmp_path))
    got, t = convert_dataset("baize", str(tmp_path), skip_bad_records=True)
    assert [g["id"] for g in got] == ["baize_0", "baize_3"]
    assert dict(t.bad) == {"missing_field": 1, "empty_conversation": 1}


def test_real_sample(shared_data, tmp_path):
    src = shared_data / "baize" / "quora_chat_data.KOREAN_TRANSLATION.json"
    got, t = convert_dataset("baize", str(src))
    recs = json.loads(src.read_text())
    assert t.read == len(recs) == 96 and [g["messages"] for g in got] == [_reference(r) for r in recs if
                                                                          _reference(r)]
    shutil.copy(src, tmp_path / "quora_chat_data.json")
    assert convert_dataset("baize", str(tmp_path))[0] == got
