"""Codex-Eval settings: the raw HumanEval prompt (and the paper's chat variant when a run forces chat), the Codex
stop strings, pass@k of n=20 samples against hand computation, canonical solutions through the setting's score."""
import os

import pytest

from camel_jax.evaluate import codex, humaneval
from camel_jax.evaluate.sandbox import detect_backend
from camel_jax.evaluate.task import BuildContext, tulu_wrap

P1, P10 = humaneval.SETTINGS
PROMPT0 = ('from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
           '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
           '    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n'
           '    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    """\n')


@pytest.fixture(scope="module")
def sandbox():
    if detect_backend() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have a working sandbox (install bubblewrap)")
        pytest.skip("no sandbox backend works here")


@pytest.fixture(scope="module")
def problems(shared_data):
    return codex.read_problems(shared_data / "humaneval" / "HumanEval.jsonl.gz")


def _items(data, chat):
    render = (lambda u, p, plain: tulu_wrap(u, p)) if chat else (lambda u, p, plain: plain)
    return P1.items(BuildContext(data_dir=str(data), protocol="paper", tokenizer=None, render=render, chat=chat))


def test_prompts_plain_and_forced_chat(shared_data):
    plain = _items(shared_data, chat=False)
    assert len(plain) == 164 and plain[0].id == "HumanEval/0" and plain[-1].id == "HumanEval/163"
    assert plain[0].prompt == PROMPT0
    assert plain[0].gold["entry_point"] == "has_close_elements" and "def check(candidate)" in plain[0].gold["test"]
    # the paper's optional chat variant, through TÜLU's wrapping (which strips the user turn's final newline)
    assert _items(shared_data, chat=True)[0].prompt == (
        "<|user|>\nComplete the following python function.\n\n\n" + PROMPT0[:-1]
        + "\n<|assistant|>\nHere is the completed function:\n\n\n" + PROMPT0)


def test_settings_declare_the_papers_sampling():
    assert (P1.column, P10.column, P1.group, P1.metric, P10.metric) == (
        "Codex P@1", "Codex P@10", "codex", "pass@1", "pass@10")
    for s, t in ((P1, 0.1), (P10, 0.8)):
        d = s.decoding
        assert not s.chat and (d.temperature, d.top_p, d.n, d.max_new_tokens) == (t, 0.95, 20, 512)
        assert d.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@pytest.mark.parametrize("text,want", [
    ("    return 1\n\ndef other():\n", "    return 1\n"),
    ("    return 1\n# done\nprint(1)", "    return 1"),
    ("    if x:\n        return 1\n    return 2", "    if x:\n        return 1\n    return 2"),  # indented: kept
    ("    x = 1\nif __name__ == '__main__':\n", "    x = 1"),
    ("    return 1\nclassify = 2", "    return 1"),  # text matching, as the token-level stop would also cut
    ("", ""),
])
def test_stop_truncation(text, want):
    assert humaneval.extract(text, None) == want
    assert humaneval.truncate(want) == want


def test_pass_at_k_of_twenty_samples_by_hand(shared_data, problems, sandbox):
    items = _items(shared_data, chat=False)[:4]
    bad = "    raise ValueError('wrong')\n"
    records = []
    for item, passing in zip(items, (0, 1, 5, 20)):
        good = problems[item.id]["canonical_solution"] + "\nprint('after the stop')\ndef broken(:\n"
        records.append({"id": item.id, "gold": item.gold, "meta": dict(item.meta), "answer": None,
                        "outputs": [good] * passing + [bad] * (20 - passing)})
    out = humaneval.score(records, workers=2)
    assert {k: (v["samples"], v["passed"]) for k, v in out["per_item"].items()} == {
        i.id: (20, c) for i, c in zip(items, (0, 1, 5, 20))}
    assert out["samples"] == 80 and out["problems"] == 4
    assert out["pass@1"] == pytest.approx(100 * (0 + 1 / 20 + 5 / 20 + 1) / 4)
    assert out["pass@5"] == pytest.approx(100 * (0 + (1 - 15 / 20) + (1 - 3003 / 15504) + 1) / 4)  # C(15,5)/C(20,5)
    assert out["pass@10"] == pytest.approx(100 * (0 + 0.5 + (1 - 3003 / 184756) + 1) / 4)  # C(15,10)/C(20,10)
    assert out["pass@20"] == pytest.approx(100 * 3 / 4)
    assert out["per_item"][items[0].id]["results"][0] == "failed: wrong"
    assert out["per_item"][items[3].id]["results"] == ["passed"] * 20


def test_canonical_solutions_pass_through_the_setting(shared_data, problems, sandbox):
    items = _items(shared_data, chat=False)[10:16]
    records = [{"id": i.id, "gold": i.gold, "meta": dict(i.meta), "answer": None,
                "output": problems[i.id]["canonical_solution"]} for i in items]
    out = humaneval.score(records, workers=2, timeout=3.0)
    assert out["pass@1"] == 100.0 and "pass@5" not in out  # one sample each
    assert all(v == {"samples": 1, "passed": 1, "results": ["passed"]} for v in out["per_item"].values())
