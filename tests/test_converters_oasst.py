"""oasst1: one example per root->assistant path (June 2023 behaviour), in the reference's DFS order."""
import json

import pytest

from camel_jax.data.converters.oasst import tree_paths
from camel_jax.data.prepare import convert_dataset
from camel_jax.data.records import BadRecord, RecordError
from conftest import TEST_DATA

FIXTURE = TEST_DATA / "raw" / "oasst_en.tree2.jsonl"


def _reference_dfs(reply, messages, out):
    """open-instruct's recursive dfs, verbatim in behaviour."""
    if reply["role"] == "assistant":
        messages.append({"role": "assistant", "content": reply["text"]})
        out.append(messages[:])
        for child in reply["replies"]:
            _reference_dfs(child, messages, out)
        messages.pop()
    elif reply["role"] == "prompter":
        messages.append({"role": "user", "content": reply["text"]})
        for child in reply["replies"]:
            _reference_dfs(child, messages, out)
        messages.pop()
    else:
        raise ValueError(reply["role"])


def _reference(path):
    out = []
    for line in open(path, encoding="utf-8"):
        tree = json.loads(line)
        _reference_dfs(tree.get("prompt", tree), [], out)
    return out


def test_paths_equal_reference_on_fixture():
    got, t = convert_dataset("oasst1", str(FIXTURE))
    assert [g["messages"] for g in got] == _reference(FIXTURE)
    assert len(got) == 7 and t.read == t.converted == 2
    assert [g["id"] for g in got] == [f"oasst1_{i}" for i in range(7)]
    for g in got:  # every path starts with the user prompt and ends with an assistant message
        assert g["messages"][0]["role"] == "user" and g["messages"][-1]["role"] == "assistant"


def test_intermediate_assistant_nodes_are_emitted():
    tree = {"role": "prompter", "text": "q", "replies": [
        {"role": "assistant", "text": "a1", "replies": [
            {"role": "prompter", "text": "q2", "replies": [{"role": "assistant", "text": "a2", "replies": []}]}]},
        {"role": "assistant", "text": "b1", "replies": []}]}
    contents = [[m["content"] for m in p] for p in tree_paths(tree)]
    assert contents == [["q", "a1"], ["q", "a1", "q2", "a2"], ["q", "b1"]]
    with pytest.raises(BadRecord, match="unknown_role"):
        tree_paths({"role": "moderator", "text": "x", "replies": []})


def test_bad_trees(tmp_path):
    good = FIXTURE.read_text().splitlines()
    bad_role = json.loads(good[0])
    bad_role["prompt"]["replies"][0]["role"] = "bot"
    no_text = json.loads(good[1])
    del no_text["prompt"]["text"]
    lonely = {"message_tree_id": "x", "prompt": {"role": "prompter", "text": "hi", "replies": []}}
    p = tmp_path / "t.jsonl"
    p.write_bytes("\n".join([good[0], json.dumps(bad_role), json.dumps(no_text), json.dumps(lonely)]).encode()
                  + b"\n{\"prompt\": \xc3\x28}\n")
    with pytest.raises(RecordError, match=r"t\.jsonl: line 2: unknown_role: .*'bot'"):
        convert_dataset("oasst1", str(p))
    got, t = convert_dataset("oasst1", str(p), skip_bad_records=True)
    assert len(got) == 3 and t.read == 5 and t.converted == 1
    assert dict(t.bad) == {"unknown_role": 1, "missing_field": 1, "non_utf8": 1}
    assert dict(t.dropped) == {"no_assistant_reply": 1}


def test_real_sample_both_layouts(shared_data):
    trees = shared_data / "oasst" / "en_100_tree.jsonl"
    got, t = convert_dataset("oasst1", str(trees))
    assert [g["messages"] for g in got] == _reference(trees)
    assert t.read == 80 and len(got) == 553  # one per assistant message in the 80 trees
    msgs, _ = convert_dataset("oasst1", str(shared_data / "oasst" / "en_100_message.jsonl"))
    assert [g["messages"] for g in msgs] == [g["messages"] for g in got]
    folder, _ = convert_dataset("oasst1", str(shared_data / "oasst"))  # resolves to the *_tree.jsonl file
    assert folder == got
