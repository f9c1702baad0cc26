"""AlpacaFarm: §4.6's prompts byte for byte on the real eval set, the setting's decoding, the fork's win-rate
formula on hand-made preferences, the no-judge path, and `score` end to end through a fake judge server."""
import json

import pytest
from fake_judge_util import FakeJudge, _first_better

from camel_jax.evaluate import alpaca_farm as af
from camel_jax.evaluate.task import BuildContext, tulu_wrap


def _ctx(data_dir, protocol="paper", chat=True, render=None):
    render = render or (lambda user, prefix, plain: tulu_wrap(user, prefix))
    return BuildContext(data_dir=str(data_dir), protocol=protocol, tokenizer=None,
                        render=render if chat else (lambda u, p, plain: plain), chat=chat)


@pytest.fixture(scope="module")
def paper_items(shared_data):
    return af.items(_ctx(shared_data))


def test_paper_prompts_are_the_june_2023_strings(paper_items):
    assert len(paper_items) == 805
    assert paper_items[0].prompt == ("<|user|>\nWhat are the names of some famous actors that started their careers "
                                     "on Broadway?\n<|assistant|>\n")
    assert paper_items[1].prompt == "<|user|>\nHow did US states get their names?\n<|assistant|>\n"
    assert paper_items[0].id == "0" and paper_items[0].meta == {
        "instruction": "What are the names of some famous actors that started their careers on Broadway?",
        "dataset": "helpful_base", "index": 0}
    assert paper_items[0].gold["reference"].startswith("Some famous actors that started their careers on Broadway "
                                                       "include: \n1. Hugh Jackman \n2. Meryl Streep")
    assert paper_items[0].gold["reference_generator"] == "text_davinci_003"


def test_unstripped_instruction_only_in_the_paper_protocol(shared_data, paper_items):
    i, item = next((i, it) for i, it in enumerate(paper_items) if it.meta["instruction"].endswith(" "))
    ins = item.meta["instruction"]
    assert item.prompt == "<|user|>\n" + ins + "\n<|assistant|>\n"  # §4.6 did not strip
    fixed = af.items(_ctx(shared_data, protocol="fixed"))[i]
    assert fixed.prompt == "<|user|>\n" + ins.strip() + "\n<|assistant|>\n"  # through the run's chat format
    assert af.items(_ctx(shared_data, chat=False))[i].prompt == ins
    hf = af.items(_ctx(shared_data, render=lambda u, p, plain: f"<s>[{u}]"))[i]  # a model's own template
    assert hf.prompt == f"<s>[{ins}]"


def test_an_input_field_takes_the_other_branch(tmp_path):
    (tmp_path / "alpaca_eval").mkdir()
    rows = [{"instruction": " Translate. ", "input": " Bonjour \n", "output": "Hello", "dataset": "x"},
            {"instruction": "Say hi", "input": "", "output": "hi", "dataset": "y"}]
    (tmp_path / af.DATA_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = af.items(_ctx(tmp_path))
    assert a.prompt == "<|user|>\nTranslate.\n\nBonjour\n<|assistant|>\n"
    assert a.meta["instruction"] == " Translate. \n\n Bonjour \n"  # the judge sees alpaca_eval's join
    assert b.prompt == "<|user|>\nSay hi\n<|assistant|>\n" and b.meta["instruction"] == "Say hi"
    (tmp_path / af.DATA_FILE).write_text(json.dumps(rows[0]) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(af.DataError, match=r"alpaca_eval.jsonl:2: field 'output' missing"):
        af.items(_ctx(tmp_path))


def test_the_setting():
    (s,) = af.SETTINGS
    assert (s.name, s.group, s.column, s.metric, s.kind, s.chat) == (
        "alpaca_farm", "alpaca_farm", "AlpacaFarm win rate", "win_rate", "generate", True)
    assert (s.decoding.max_new_tokens, s.decoding.temperature, s.decoding.n, s.decoding.stop) == (2048, 0.0, 1, ())
    assert s.extract(" raw text\n", None) == " raw text\n"
    assert s.subset_key(af.Item(id="3", prompt="", gold=None, meta={"dataset": "koala"})) == "koala"


def test_head2head_counts_ties_half():
    out = af.head2head([2, 2, 1, 0])  # pref − 1 = [1, 1, 0, 0.5]
    assert (out["n_wins"], out["n_wins_base"], out["n_draws"], out["n_total"]) == (2, 1, 1, 4)
    assert out["win_rate"] == pytest.approx(62.5)
    assert out["standard_error"] == pytest.approx(100 * (0.6875 / 3 / 4) ** 0.5)  # sample SEM
    assert af.head2head([1])["standard_error"] is None


def _records(items, outputs):
    return [{"id": it.id, "gold": it.gold, "meta": it.meta, "answer": out, "output": out}
            for it, out in zip(items, outputs)]


def test_without_a_judge_the_column_is_not_judged(paper_items):
    out = af.score(_records(paper_items[:3], ["a", "bb", "ccc"]), sandbox="ignored")
    assert out["judged"] is False and out["status"] == "not judged" and "win_rate" not in out
    assert out["n_outputs"] == 3 and out["avg_length"] == 2.0


def test_score_through_a_judge_server(shared_data, paper_items, tmp_path):
    items = paper_items[:15]
    outputs = [("WIN " if i % 2 else "") + f"short answer {i}" + (" GARBLE" if i == 12 else "")
               for i in range(15)]
    records = _records(items, outputs)
    model_better = [_first_better(o, it.gold["reference"]) for o, it in zip(outputs, items)]
    cache = tmp_path / "judge.jsonl"
    opts = dict(judge_model="fake-judge", judge_cache=cache, data_dir=shared_data)
    with FakeJudge(fail_first=1) as server:
        out = af.score(records, judge_url=server.url, **opts, sandbox="ignored")
        n_requests = len(server.requests)
    assert out["judged"] and out["judge_model"] == "fake-judge" and out["judge_template"] == "alpaca_farm_greedy_gpt4"
    bad = {u["id"] for u in out["unparseable"]}
    assert out["n_unparseable"] == 5 and "12" in bad  # the batch holding the garbled reply
    assert all(u["raw"] == "Both outputs have merits; I cannot choose." for u in out["unparseable"])
    kept = [mb for it, mb in zip(items, model_better) if it.id not in bad]
    expected = af.head2head([2 if mb else 1 for mb in kept])
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total", "win_rate", "standard_error"):
        assert out[key] == expected[key]
    assert out["n_total"] == 10 and out["length_controlled_winrate"] is not None and "lc_standard_error" in out
    assert {out["per_item"][i]["preference"] for i in bad} == {None} and len(out["per_item"]) == 15
    # a rescore from the cache alone (no URL) asks nothing for the parsed pairs, reproduces the numbers; the
    # unparseable batch is not cached, so it needs the judge again
    with pytest.raises(af.judge_lib.JudgeError, match="5 pairs are not in the judgment cache"):
        af.score(records, **opts)
    again = af.score([r for r in records if r["id"] not in bad], **opts)
    assert again["win_rate"] == out["win_rate"] and n_requests == 4  # 3 batches + the transient 500
    assert again["lc_terms"] == "model+length"
    # alpaca_eval's instruction_difficulty.csv (index, value) adds the difficulty term
    (tmp_path / "difficulty.csv").write_text("index,instruction_difficulty\n" +
                                             "".join(f"{i},{0.1 * i - 0.7}\n" for i in range(15)))
    with_difficulty = af.score([r for r in records if r["id"] not in bad], **opts,
                               difficulty_file=tmp_path / "difficulty.csv")
    assert with_difficulty["lc_terms"] == "model+length+difficulty"
    assert with_difficulty["win_rate"] == out["win_rate"]


def test_reference_file_replaces_the_reference(shared_data, paper_items, tmp_path):
    ref_file = shared_data / "alpaca_eval" / "text_davinci_003_model_outputs.json"
    refs = {r["instruction"]: r["output"] for r in json.loads(ref_file.read_text())}
    records = _records(paper_items[:5], [f"answer {i}" for i in range(5)])
    with FakeJudge() as server:
        out = af.score(records, judge_url=server.url, judge_model="fake-judge", data_dir=shared_data,
                       reference_file=ref_file)
        shown = {ins: {a, b} for ins, a, b in server.shown}
    assert out["reference"] == str(ref_file) and out["n_total"] == 5 and out["length_controlled_winrate"] is None
    for it in paper_items[:5]:
        assert refs[it.meta["instruction"]] in shown[it.meta["instruction"]]
    with pytest.raises(af.DataError, match="no output for item 0"):
        bad = tmp_path / "refs.json"
        bad.write_text(json.dumps([{"instruction": "other", "output": "x"}]))
        af.score(records, judge_url="http://127.0.0.1:9", judge_model="m", data_dir=shared_data, reference_file=bad)


def test_judge_flags_become_score_options(tmp_path):
    import argparse

    ap = argparse.ArgumentParser()
    af.add_judge_flags(ap)
    assert af.judge_options(ap.parse_args([]), str(tmp_path), "/data") == {}
    opts = af.judge_options(ap.parse_args(["--judge_url", "http://127.0.0.1:8000/v1", "--judge_model", "m"]),
                            str(tmp_path), "/data")
    assert opts["judge_cache"] == str(tmp_path / "alpaca_farm" / "judge_cache.jsonl") and opts["data_dir"] == "/data"
    assert (opts["judge_url"], opts["judge_model"], opts["judge_template"]) == (
        "http://127.0.0.1:8000/v1", "m", "alpaca_farm_greedy_gpt4")
