"""The pairwise judge end to end against a fake OpenAI-compatible server on 127.0.0.1 (tests/fake_judge_util.py),
with the real AlpacaFarm/AlpacaEval templates from ../shared/data: order randomised and undone, disk cache, retries,
unparseable replies counted, template filling and parsing as alpaca_eval does them."""
import json

import pytest
from fake_judge_util import FakeJudge

from camel_jax.evaluate import judge as J


def _pairs(n=12, garble=()):
    """Expected preference per pair: model contains WIN → 2; reference contains WIN → 1; neither → the longer
    (the reference) → 1; the last pair has identical outputs → 0 without a call."""
    pairs, expected = [], []
    for i in range(n):
        out = f"model {i} WIN" if i % 3 == 0 else f"model {i}"
        ref = f"reference {i} WIN" if i % 3 == 1 else f"reference {i}"
        if i == n - 1:
            out = ref
        pairs.append({"id": str(i), "instruction": ("GARBLE " if i in garble else "") + f"Question {i}?",
                      "output": out, "reference": ref})
        expected.append(0 if i == n - 1 else 2 if i % 3 == 0 else 1)
    return pairs, expected


@pytest.fixture(scope="module")
def b5(shared_data):
    return J.load_template("alpaca_farm_greedy_gpt4", shared_data)


def test_templates_load_from_the_shipped_configs(shared_data, b5):
    assert (b5.batch_size, b5.parser, b5.default_model, b5.max_tokens, b5.temperature) == (
        5, "regex", "gpt-4-0314", 250, 0.0)
    single = J.load_template("alpaca_eval_gpt4", shared_data)
    assert (single.batch_size, single.parser, single.default_model, single.max_tokens) == (1, "ranking", "gpt-4", 100)
    with pytest.raises(J.JudgeError, match="alpaca_eval_gpt4, alpaca_farm_greedy_gpt4"):
        J.load_template("nope", shared_data)


def test_fill_and_messages_follow_alpaca_eval(b5):
    pairs = [{"instruction": f"I{k} {{output_1}}", "output_1": f"A{k}", "output_2": f"B{k}"} for k in range(5)]
    text = J.fill(b5, pairs)
    assert ("### Instruction 5:\nI0 {output_1}\n\n### Output (a) for example 5:\nA0\n\n"
            "### Output (b) for example 5:\nB0") in text  # a placeholder inside a value is not substituted again
    assert "### Instruction 9:\nI4 {output_1}\n\n### Output (a) for example 9:\nA4\n\n" in text
    msgs = J.to_messages(text)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("You are a helpful following assistant") and msgs[0]["content"].endswith(
        "with no other text.")
    assert msgs[1]["content"].endswith("Now give all the preferred outputs for the batch of 5 examples.")


def test_parsers(b5, shared_data):
    assert J.parse(b5, "Output (a)\n\nOutput (b)\n Output (b)\nOutput (a)\nOutput (a)") == [1, 2, 2, 1, 1]
    assert J.parse(b5, "### Which is best for example 5, Output (a) or Output (b)?:\nOutput (b)\n" * 5) == [2] * 5
    assert J.parse(b5, "Output (a)\nOutput (b)") is None  # 2 answers for a batch of 5
    assert J.parse(b5, None) is None
    single = J.load_template("alpaca_eval_gpt4", shared_data)
    assert J.parse(single, "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]") == [2]
    assert J.parse(single, "[{'model': 'model_1', 'rank': 3}]") is None
    assert J.parse(single, "model_1 is better") is None


def test_judge_end_to_end_order_cache_retry(b5, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pairs, expected = _pairs()
    cache = tmp_path / "judge_cache.jsonl"
    with FakeJudge(fail_first=1, fail_status=500) as server:
        judge = J.Judge(server.url, "fake-judge", b5, cache, seed=0, backoff=0.01, concurrency=2)
        res = judge.judge(pairs)
        assert [r["preference"] for r in res] == expected
        assert {r["swapped"] for r in res[:-1]} == {True, False}  # both orders were shown
        # what the judge saw as (a) is the model's output exactly when the pair was swapped
        shown = {ins: a for ins, a, _ in server.shown}
        for p, r in zip(pairs[:-1], res[:-1]):
            assert shown[p["instruction"]] == (p["output"] if r["swapped"] else p["reference"])
        assert judge.calls == 3  # 11 pairs asked (1 draw), batches of 5, 5 and 1 padded with the dummy pair
        assert len(server.requests) == 4  # + the transient 500, retried
        req = server.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
        assert (req["body"]["model"], req["body"]["temperature"], req["body"]["max_tokens"]) == ("fake-judge", 0.0, 250)
        padded = [r["body"]["messages"][1]["content"] for r in server.requests
                  if "Question 10?" in r["body"]["messages"][1]["content"]][-1]
        assert "### Instruction 6:\n1+1=\n\n### Output (a) for example 6:\n2\n\n### Output (b) for example 6:\n3\n\n" \
            in padded  # alpaca_eval's padding pair
        assert len(cache.read_text().splitlines()) == 11

        again = J.Judge(server.url, "fake-judge", b5, cache, seed=0, backoff=0.01).judge(pairs)
        assert len(server.requests) == 4  # nothing re-asked
        assert [r["preference"] for r in again] == expected and all(r["cached"] for r in again[:-1])
    # the cache alone (no URL) answers a rescore; another judge model or seed is a different question
    assert [r["preference"] for r in J.Judge(None, "fake-judge", b5, cache).judge(pairs)] == expected
    with pytest.raises(J.JudgeError, match="11 pairs are not in the judgment cache"):
        J.Judge(None, "other-judge", b5, cache).judge(pairs)


def test_unparseable_replies_are_counted_not_cached(b5, tmp_path):
    pairs, expected = _pairs(garble={7})
    cache = tmp_path / "c.jsonl"
    with FakeJudge() as server:
        res = J.Judge(server.url, "fake-judge", b5, cache, backoff=0.01).judge(pairs)
        bad = [r for r in res if r["preference"] is None]
        assert [r["id"] for r in bad] == ["5", "6", "7", "8", "9"]  # the whole batch of 5 holding the garbled reply
        assert all(r["raw"] == "Both outputs have merits; I cannot choose." for r in bad)
        good = [(r["preference"], e) for r, e in zip(res, expected) if r["preference"] is not None]
        assert all(p == e for p, e in good) and len(good) == 7
        n = len(server.requests)
        res2 = J.Judge(server.url, "fake-judge", b5, cache, backoff=0.01).judge(pairs)
        assert len(server.requests) == n + 1  # only the unparseable batch is asked again
        assert [r["preference"] for r in res2] == [r["preference"] for r in res]


def test_single_pair_template(shared_data, tmp_path):
    single = J.load_template("alpaca_eval_gpt4", shared_data)
    pairs, expected = _pairs(6)
    with FakeJudge() as server:
        judge = J.Judge(server.url + "/chat/completions", "fake-judge", single, tmp_path / "c.jsonl")
        assert [r["preference"] for r in judge.judge(pairs)] == expected
        assert judge.calls == 5 and server.requests[0]["path"] == "/v1/chat/completions"


def test_http_errors(b5, tmp_path):
    pairs, _ = _pairs(3)
    with FakeJudge(fail_first=100, fail_status=503) as server:
        with pytest.raises(J.JudgeError, match="3 attempts failed, last: HTTP 503"):
            J.Judge(server.url, "fake-judge", b5, None, max_retries=2, backoff=0.001).judge(pairs)
        assert len(server.requests) == 3
    with FakeJudge(fail_first=100, fail_status=401) as server:
        with pytest.raises(J.JudgeError, match="refused the request: HTTP 401"):
            J.Judge(server.url, "fake-judge", b5, None, backoff=0.001).judge(pairs)
        assert len(server.requests) == 1  # not transient: no retry


def test_torn_cache_line_is_asked_again(b5, tmp_path):
    pairs, expected = _pairs(3)
    cache = tmp_path / "c.jsonl"
    with FakeJudge() as server:
        J.Judge(server.url, "fake-judge", b5, cache).judge(pairs)
        first = cache.read_text().splitlines()[0]
        cache.write_text(first + "\n" + '{"key": "tor')  # killed while writing the second record
        res = J.Judge(server.url, "fake-judge", b5, cache).judge(pairs)
        assert [r["preference"] for r in res] == expected
    assert len([json.loads(line) for line in cache.read_text().splitlines()]) == 2  # torn line gone (1 draw)
    cache.write_text('garbage\n' + first + "\n")
    with pytest.raises(J.JudgeError, match=r"c.jsonl:1: not a judgment cache record"):
        J.Judge(None, "fake-judge", b5, cache)


def test_a_refused_prompt_leaves_only_its_batch_unjudged(b5, tmp_path):
    pairs, expected = _pairs(12)
    with FakeJudge(fail_first=1, fail_status=413) as server:  # e.g. longer than a local judge's context
        judge = J.Judge(server.url, "fake-judge", b5, tmp_path / "c.jsonl", concurrency=1)
        res = judge.judge(pairs)
        assert len(server.requests) == 3 and judge.calls == 2  # no retry of the refused one
    refused = [r for r in res if r["error"] is not None]
    assert [r["id"] for r in refused] == ["0", "1", "2", "3", "4"] and all(r["preference"] is None for r in refused)
    assert refused[0]["error"].startswith("HTTP 413")
    assert [r["preference"] for r in res[5:]] == expected[5:]
