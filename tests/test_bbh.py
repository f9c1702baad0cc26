"""BBH settings: the paper's prompts byte for byte (CoT and direct, chat and plain, both protocols), its seeded
40-per-task subsample, both extractions and the macro average."""
import glob
import json
import os
import random

import pytest

from camel_jax.evaluate import bbh
from camel_jax.evaluate.task import BuildContext, Item, tulu_wrap

DIRECT, COT = bbh.SETTINGS

SPORTS_HEAD = "Determine whether an artificially constructed sentence relating to sports is plausible or not.\n\n"
SPORTS_COT = (
    SPORTS_HEAD
    + 'Q: Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western Conference Finals."\n'
    "A: Let's think step by step. Bam Adebayo is an American basketball player. Scoring a reverse layup in the Western "
    "Conference Finals is part of the NBA Finals. So the answer is yes.\n\n"
    'Q: Is the following sentence plausible? "Santi Cazorla scored a touchdown."\n'
    "A: Let's think step by step. Santi Cazorla is a soccer player. Touchdown is part of American football and rugby. "
    "So the answer is no.\n\n"
    'Q: Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."\n'
    "A: Let's think step by step. DeMar DeRozan is an American basketball player. Goal tending is part of basketball. "
    "So the answer is yes.")
SPORTS_DIRECT = (
    SPORTS_HEAD
    + 'Q: Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western Conference Finals."\n'
    "A: yes.\n\n"
    'Q: Is the following sentence plausible? "Santi Cazorla scored a touchdown."\nA: no.\n\n'
    'Q: Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."\nA: yes.')
# the first of the 40 sampled sports_understanding examples (index 177 of the file), gold "no"
QUESTION = 'Is the following sentence plausible? "Frederik Andersen converted the first down."'


def _ctx(data, protocol="paper", chat=False):
    render = (lambda u, p, plain: tulu_wrap(u, p)) if chat else (lambda u, p, plain: plain)
    return BuildContext(data_dir=str(data), protocol=protocol, tokenizer=None, render=render, chat=chat)


@pytest.fixture(scope="module")
def built(shared_data):
    return {(s.name, proto, chat): s.items(_ctx(shared_data, proto, chat))
            for s in bbh.SETTINGS for proto in ("paper", "fixed") for chat in (False, True)}


@pytest.mark.parametrize("protocol", ["paper", "fixed"])
def test_prompts_byte_exact(built, protocol):
    def first_sports(name, chat):
        return next(i for i in built[(name, protocol, chat)] if i.meta["task"] == "sports_understanding")

    item = first_sports("bbh_cot", False)
    assert (item.id, item.gold) == ("sports_understanding/177", "no")
    assert item.prompt == SPORTS_COT + "\n\nQ: " + QUESTION + "\nA:"
    assert first_sports("bbh_cot", True).prompt == (
        "<|user|>\n" + SPORTS_COT + "\n\nQ: " + QUESTION + "\n<|assistant|>\nA:")
    assert first_sports("bbh_direct", False).prompt == SPORTS_DIRECT + "\n\nQ: " + QUESTION + "\nA:"
    assert first_sports("bbh_direct", True).prompt == (
        "<|user|>\n" + SPORTS_DIRECT + "\n\nQ: " + QUESTION + "\n<|assistant|>\nA:")


def test_direct_exemplars_of_every_task_keep_the_answer_and_drop_the_reasoning(shared_data):
    for task in bbh.task_names(str(shared_data)):
        text = bbh.task_prompt(os.path.join(shared_data, "bbh", "cot-prompts", f"{task}.txt"), cot=False)
        shots = [f for f in text.split("\n\n") if f.startswith("Q:")]
        assert len(shots) == 3, task
        for shot in shots:
            assert "Let's think step by step" not in shot and "\nA: " in shot, task
            assert shot.endswith("."), task


def test_subsample_is_the_papers_seeded_loop_in_sorted_order(built, shared_data):
    random.seed(42)  # the paper's code path: one global seed, random.sample of the example lists per task file
    want = []
    for path in sorted(glob.glob(os.path.join(shared_data, "bbh", "bbh", "*.json"))):
        with open(path) as f:
            want += [(os.path.basename(path)[:-5], e) for e in random.sample(json.load(f)["examples"], 40)]
    items = built[("bbh_cot", "paper", False)]
    assert len(items) == 1080 == len({i.id for i in items}) and len({i.meta["task"] for i in items}) == 27
    assert [(i.meta["task"], i.gold) for i in items] == [(t, e["target"]) for t, e in want]
    assert all(i.prompt.endswith("\n\nQ: " + e["input"] + "\nA:") for i, (_, e) in zip(items, want))
    # the same items, in the same order, for every setting, protocol and chat format
    assert len({tuple(i.id for i in v) for v in built.values()}) == 1


def _item(protocol):
    return Item(id="t/0", prompt="", gold="", meta={"task": "t", "protocol": protocol})


@pytest.mark.parametrize("output,paper,fixed", [
    (" Let's think step by step. X. So the answer is (A).\n\nQ: next\nA: So the answer is (B).", "(A)", "(A)"),
    (" (B)\n\nQ: more", "(B)", "(B)"),  # direct: the first paragraph
    ("\n\nSo the answer is yes.", "yes", "yes"),  # leading blank lines are stripped first
    (" Step one.\n\nSo the answer is no.", "Step one.", "no"),  # a conclusion in a later paragraph: only fixed
    (" The answer is 24.", "The answer is 24.", "24"),  # capitalised: only fixed's regex
    (" So the answer is 1.5. Then", "1", "1"),  # lazy up to the first period, as both regexes are
    ("", "", ""),
])
def test_extraction_paper_and_fixed(output, paper, fixed):
    assert bbh.extract(output, _item("paper")) == paper
    assert bbh.extract(output, _item("fixed")) == fixed


def test_score_is_a_macro_average_of_case_and_punctuation_blind_exact_match():
    recs = [{"id": "one/0", "answer": "A", "gold": "(A)", "meta": {"task": "one"}}]
    recs += [{"id": f"two/{n}", "answer": a, "gold": "True", "meta": {"task": "two"}}
             for n, a in enumerate(("true", "False", "yes", ""))]
    out = bbh.score(recs)
    assert out["per_item"] == {"one/0": True, "two/0": True, "two/1": False, "two/2": False, "two/3": False}
    assert out["per_task"] == {"one": 100.0, "two": 25.0}
    assert out["exact_match"] == 62.5 and out["count"] == 5  # micro would be 40


def test_settings_declare_the_papers_decoding():
    assert (DIRECT.column, COT.column, DIRECT.group, COT.metric) == ("BBH Direct", "BBH CoT", "bbh", "exact_match")
    assert DIRECT.chat and COT.chat
    assert (DIRECT.decoding.max_new_tokens, DIRECT.decoding.temperature, DIRECT.decoding.stop) == (512, 0.0, ("\n\n",))
    assert (COT.decoding.max_new_tokens, COT.decoding.stop) == (512, ())


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(bbh.BBHDataError, match=str(tmp_path)):
        COT.items(_ctx(tmp_path))
    (tmp_path / "bbh" / "bbh").mkdir(parents=True)
    (tmp_path / "bbh" / "cot-prompts").mkdir()
    (tmp_path / "bbh" / "bbh" / "x.json").write_text('{"examples": [{"input": "q"}]}')
    with pytest.raises(bbh.BBHDataError, match="only in bbh/: \\['x'\\]"):
        COT.items(_ctx(tmp_path))
    (tmp_path / "bbh" / "cot-prompts" / "x.txt").write_text("canary\n-----\nQ: a\nA: b\n")
    with pytest.raises(bbh.BBHDataError, match="x.json: not a BBH task file"):
        COT.items(_ctx(tmp_path))
