"""An evaluation folder's predictions file: a torn last line is cut, a record of another prompt or item refused."""
import json

import pytest

from camel_jax.cli import UsageError


def test_a_predictions_file_of_other_prompts_is_refused(tmp_path):
    from camel_jax.evaluate import records
    from camel_jax.evaluate.task import Item

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x/0", "prompt": "old"}) + "\n" + '{"id": "x/1", "pro')
    items = {"x/0": Item("x/0", "old", "A"), "x/1": Item("x/1", "new", "A")}
    assert list(records.read_predictions(str(path), items)) == ["x/0"]
    assert path.read_text().endswith("}\n")  # the torn line is gone
    with pytest.raises(UsageError, match=r"p.jsonl:1: the prompt of 'x/0' differs"):
        records.read_predictions(str(path), {"x/0": Item("x/0", "other", "A")})
    with pytest.raises(UsageError, match=r"p.jsonl:1: id 'x/0' is not an item"):
        records.read_predictions(str(path), {})


def test_correctness_from_a_scores_per_item():
    from camel_jax.evaluate.records import correctness

    assert correctness(True) == {"correct": True} and correctness(None) == {"correct": None}
    assert correctness({"samples": 3, "passed": 1, "results": ["passed", "timed out", "failed: x"]}) == {
        "correct": [True, False, False], "results": ["passed", "timed out", "failed: x"]}
    for pref, credit in ((2, 1.0), (0, 0.5), (1, 0.0), (None, None)):  # win, tie (half), loss, unparseable
        j = {"preference": pref, "swapped": False, "cached": True}
        assert correctness(j) == {"correct": credit, "judgment": j}
    assert correctness({"exact_match": 0.0, "f1": 0.4}) == {"correct": 0.4, "exact_match": 0.0}


def test_annotate_rewrites_only_the_scored_records(tmp_path):
    from camel_jax.evaluate.records import annotate

    path = tmp_path / "predictions.jsonl"
    recs = [{"id": "a", "answer": "x", "correct": None}, {"id": "b", "answer": "y", "correct": None,
                                                           "judgment": {"preference": 2}},
            {"id": "c", "answer": "z", "correct": True}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    annotate(str(path), {"a": {"preference": 0, "swapped": True, "cached": False}}, ["a", "b"])
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in got] == ["a", "b", "c"]
    assert got[0]["correct"] == 0.5 and got[0]["judgment"]["swapped"] is True
    assert got[1] == {"id": "b", "answer": "y", "correct": None}  # scored without a judgment: no stale one
    assert got[2] == recs[2]  # not scored this time: as it was
    before = path.stat().st_mtime_ns
    annotate(str(path), {"a": {"preference": 0, "swapped": True, "cached": False}}, ["a", "b"])
    assert path.stat().st_mtime_ns == before  # nothing changed, nothing written
