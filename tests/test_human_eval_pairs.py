"""The study's pairs: open-instruct's comparison file (the real 996 lines), two models' outputs, bad lines named."""
import json

import pytest

from camel_jax.cli import UsageError
from camel_jax.human_eval.pairs import load_pairs, pair_id, read_comparisons

from conftest import TEST_DATA

FIXTURE = str(TEST_DATA / "human_eval" / "pairs.jsonl")


def test_shared_file_has_996_pairs_of_332_instructions(shared_data):
    pairs = read_comparisons(str(shared_data / "tulu_human_eval" / "eval_instances_tulu_1.jsonl"))
    assert len(pairs) == 996
    assert len({p.pair_id for p in pairs}) == 996  # the id alone recurs in three pairings
    assert len({p.instance_id for p in pairs}) == 332
    by_models = {}
    for p in pairs:
        by_models.setdefault(tuple(sorted((p.model_1, p.model_2))), []).append(p)
    assert {k: len(v) for k, v in by_models.items()} == {
        ("chatgpt", "tulu_65B"): 332, ("tulu_65B", "tulu_7B"): 332, ("tulu_65B", "tulu_human_only_65B"): 332}
    # The file's order is fixed (why the app picks sides): 65B is first against ChatGPT, second otherwise.
    assert all(p.model_1 == "tulu_65B" for p in by_models[("chatgpt", "tulu_65B")])
    assert all(p.model_2 == "tulu_65B" for p in by_models[("tulu_65B", "tulu_7B")])


def test_fixture_pairs_and_their_ids():
    pairs = load_pairs([FIXTURE])
    assert [p.pair_id for p in pairs[:2]] == ["user_oriented_task_2:chatgpt|tulu_65B",
                                             "user_oriented_task_2:tulu_65B|tulu_7B"]
    assert pair_id("x", "b", "a") == pair_id("x", "a", "b") == "x:a|b"
    hostile = pairs[-1]
    assert "</pre><script>" in hostile.completion("tulu_65B") and hostile.completion("chatgpt").startswith("Hi!")
    with pytest.raises(KeyError):
        hostile.completion("tulu_7B")


GOOD = {"id": "a", "prompt": "p", "completions": [{"model": "m1", "completion": "x"}, {"model": "m2",
                                                                                        "completion": "y"}]}


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({**GOOD, "completions": GOOD["completions"][:1]}), "'completions' must be a list of two"),
    (json.dumps({**GOOD, "prompt": ""}), "field 'prompt' must be a non-empty string"),
    (json.dumps({**GOOD, "id": None}), "field 'id'"),
    (json.dumps({**GOOD, "completions": [{"model": "m1", "completion": "x"}, {"model": "m1", "completion": "y"}]}),
     "both completions are from model 'm1'"),
    (json.dumps({**GOOD, "completions": [{"model": "m1", "completion": 3}, GOOD["completions"][1]]}),
     "completions[0]: field 'completion'"),
    (json.dumps(GOOD), "repeats line 1"),
])
def test_malformed_comparison_line_is_named(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n")
    with pytest.raises(UsageError) as e:
        load_pairs([str(path)])
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_pairs_from_evaluate_predictions(tmp_path):
    # camel_jax.evaluate's predictions.jsonl records carry id, prompt and output (camel_jax/evaluate/run.py).
    # alpaca_farm keeps the instruction in meta: annotators read it, not the chat-rendered prompt, so two models
    # evaluated with different chat formats still pair up.
    a = _jsonl(tmp_path / "a.jsonl", [{"id": "q1", "prompt": "P1", "output": "a1", "correct": None},
                                      {"id": "q2", "prompt": "<|user|>\nP2\n<|assistant|>\n", "output": "a2",
                                       "meta": {"instruction": "P2"}}])
    b = _jsonl(tmp_path / "b.jsonl", [{"id": "q2", "prompt": "<s>[INST] P2 [/INST]", "output": "b2",
                                       "meta": {"instruction": "P2", "dataset": "x"}},
                                      {"id": "q1", "prompt": "P1", "output": "b1"}])
    pairs = load_pairs([f"mine={a}", f"base={b}"])
    assert [(p.instance_id, p.prompt, p.completion("mine"), p.completion("base")) for p in pairs] == [
        ("q1", "P1", "a1", "b1"), ("q2", "P2", "a2", "b2")]
    assert pairs[0].pair_id == "q1:base|mine"


def test_pairs_from_generate_outputs_take_prompts_from_the_input(tmp_path):
    # camel_jax.generate --input/--output: output lines are {"id", "output", ...}; prompts are in the input file.
    prompts = _jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "raw text"},
                                             {"id": 2, "messages": [{"role": "user", "content": "hello"}]}])
    a = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "output": "x1", "finish_reason": "stop"}, {"id": 2, "output": "x2"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"id": 2, "output": "y2"}, {"id": 1, "output": "y1"}])
    pairs = load_pairs([f"x={a}", f"y={b}"], prompts)
    assert [(p.instance_id, p.prompt) for p in pairs] == [("1", "raw text"), ("2", "hello")]
    with pytest.raises(UsageError, match=r"a.jsonl:1: id '1' has no 'prompt'; a generate output needs its --input"):
        load_pairs([f"x={a}", f"y={b}"])


def test_two_outputs_must_cover_the_same_prompts(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"id": "q1", "prompt": "P1", "output": "a"}, {"id": "q2", "prompt": "P2",
                                                                                     "output": "a"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"id": "q1", "prompt": "P1", "output": "b"}])
    with pytest.raises(UsageError, match=r"a.jsonl:2: id 'q2' is not in .*b.jsonl"):
        load_pairs([f"m={a}", f"n={b}"])
    c = _jsonl(tmp_path / "c.jsonl", [{"id": "q1", "prompt": "P1", "output": "c"}, {"id": "q2", "prompt": "other",
                                                                                     "output": "c"}])
    with pytest.raises(UsageError, match=r"c.jsonl:2: the prompt of id 'q2' differs from .*a.jsonl:2"):
        load_pairs([f"m={a}", f"n={c}"])
    d = _jsonl(tmp_path / "d.jsonl", [{"id": "q1", "prompt": "P1", "outputs": ["a", "b"]}])
    with pytest.raises(UsageError, match=r"d.jsonl:1: no field 'output' \(evaluate ran with n > 1"):
        load_pairs([f"m={a}", f"n={d}"])
    with pytest.raises(UsageError, match="both outputs are named 'm'"):
        load_pairs([f"m={a}", f"m={b}"])
    with pytest.raises(UsageError, match="expected MODEL=FILE"):
        load_pairs([f"={a}", f"m={b}"])
    with pytest.raises(UsageError, match="got 3 values"):
        load_pairs([f"m={a}", f"n={b}", f"o={c}"])
    with pytest.raises(UsageError, match="no such file"):
        load_pairs([str(tmp_path / "absent.jsonl")])
