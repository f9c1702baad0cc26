"""`python -m camel_jax.evaluate --tasks all`: all six benchmarks end to end on the tiny model with the LLaMA
tokenizer and the real eval files (--max_examples 1, Codex's n = 20 samples run in the real sandbox), the full
table with AlpacaFarm marked "not judged", each record's correctness in the predictions, the judge path against
the fake OpenAI-compatible server (run, then rescore from the judge cache without a call), the per-setting BOS and
TydiQA's "<s>" under protocol paper, and the scoring errors as one-line usage errors."""
import os
import shutil

import pytest
from eval_util import read_json, saved_preds

from camel_jax.evaluate import registry, table
from camel_jax.evaluate.__main__ import main
from camel_jax.evaluate.sandbox import detect_backend
from camel_jax.evaluate.task import encode_prompt

ARGS = ["--max_examples", "1", "--max_new_tokens", "4", "--slots", "4", "--no_progress", "--sandbox_workers", "2"]


@pytest.fixture(scope="module")
def suite(eval_ckpt, eval_data, tmp_path_factory):
    if detect_backend() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have a working sandbox (install bubblewrap)")
        pytest.skip("no sandbox backend works here (Codex needs one)")
    out = str(tmp_path_factory.mktemp("suite_out") / "all")
    assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--tasks", "all"] + ARGS) == 0
    return out


def test_all_writes_the_eleven_columns(suite):
    t = read_json(suite, "table.json")
    assert [c["column"] for c in t["columns"]] == [c for c, _ in table.COLUMNS]
    assert [c["task"] for c in t["columns"]] == list(registry.SETTINGS)
    assert [c["status"] for c in t["columns"]] == ["ok"] * 10 + ["not judged"]
    assert t["average"] is None and t["groups_run"] == list(table.GROUPS[:5]) and t["partial_average"] is not None
    md = open(os.path.join(suite, "table.md")).read()
    assert md.splitlines()[0] == "| model | " + " | ".join(c for c, _ in table.COLUMNS) + " | Average |"
    assert "| not judged |" in md and "5 of 6 benchmark groups" in md
    for name, s in registry.SETTINGS.items():
        m = read_json(suite, name, "metrics.json")
        assert m["complete"] and m["records"] == 1, name
        assert read_json(suite, name, "run.json")["counts"]["selected"] == 1


def test_every_prediction_carries_its_correctness(suite, eval_ckpt):
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(os.path.join(eval_ckpt, "tokenizer"))
    for name, s in registry.SETTINGS.items():
        preds, per_item = saved_preds(suite, name), read_json(suite, name, "metrics.json").get("per_item")
        for i, r in preds.items():
            assert r["prompt_tokens"] == len(tok.encode(r["prompt"], add_bos=True)), name  # fixed: BOS everywhere
            if name.startswith("bbh"):
                assert r["correct"] is per_item[i]
            elif name.startswith("tydiqa"):
                assert r["correct"] == per_item[i]["f1"] and r["exact_match"] == per_item[i]["exact_match"]
            elif name.startswith("codex"):  # each of the 20 samples' pass/fail and its sandbox result
                assert len(r["outputs"]) == len(r["correct"]) == len(r["results"]) == 20
                assert r["results"] == per_item[i]["results"] and sum(r["correct"]) == per_item[i]["passed"]
                assert all(x == "passed" or x.startswith(("failed", "timed out")) for x in r["results"])
            elif name == "alpaca_farm":
                assert r["correct"] is None and per_item is None  # not judged
            else:
                assert isinstance(r["correct"], bool) and per_item is None, name
    codex = read_json(suite, "codex_pass1", "metrics.json")
    assert codex["samples"] == 20 and codex["problems"] == 1 and 0 <= codex["pass@1"] <= 100


def test_judge_run_then_rescore_from_its_cache(suite, eval_ckpt, eval_data, tmp_path):
    from fake_judge_util import FakeJudge

    out = str(tmp_path / "judged")
    shutil.copytree(suite, out)
    with FakeJudge() as fj:
        judge = ["--judge_url", fj.url, "--judge_model", "fake-judge"]
        # every item is already there: the rerun loads no model, it only scores, through the judge
        assert main(["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out, "--tasks", "alpaca_farm"]
                    + ARGS + judge) == 0
        calls = len(fj.requests)
        m = read_json(out, "alpaca_farm", "metrics.json")
        assert calls >= 1 and m["judged"] and m["n_total"] == 1 and m["judge_model"] == "fake-judge"
        assert m["win_rate"] == 100 * sum({2: 1, 0: .5, 1: 0}[v["preference"]] for v in m["per_item"].values())
        for i, r in saved_preds(out, "alpaca_farm").items():
            assert r["judgment"]["preference"] == m["per_item"][i]["preference"]
            assert r["correct"] == {2: 1.0, 0: 0.5, 1: 0.0}[r["judgment"]["preference"]]
        t = read_json(out, "table.json")
        assert t["columns"][-1]["status"] == "ok" and t["columns"][-1]["value"] == m["win_rate"]
        assert t["average"] is not None and t["partial_average"] is None
        os.remove(os.path.join(out, "alpaca_farm", "metrics.json"))
        assert main(["rescore", "--out", out, "--no_progress", "--sandbox_workers", "2"] + judge) == 0
        assert len(fj.requests) == calls  # every judgment came from the run's judge cache
    again = read_json(out, "alpaca_farm", "metrics.json")
    assert all(v["cached"] for v in again["per_item"].values())
    drop = lambda d: {k: v for k, v in d.items() if k != "per_item"}  # noqa: E731  (per_item says "cached")
    assert drop(again) == drop(m)
    assert read_json(out, "codex_pass10", "metrics.json") == read_json(suite, "codex_pass10", "metrics.json")


def test_paper_protocol_bos_per_setting_and_tydiqas_bos_text(eval_ckpt, eval_data):
    """The driver's prompt ids under paper: AlpacaFarm's with BOS (its script's default tokenizer), TydiQA's without,
    their truncated passages' literal "<s>" read as the BOS id (the second item, Bengali, has one); fixed: BOS."""
    import argparse

    from camel_jax.evaluate import run
    from camel_jax.evaluate.task import BuildContext
    from camel_jax.model.tokenizer import load_tokenizer

    tok = load_tokenizer(os.path.join(eval_ckpt, "tokenizer"))
    for protocol in ("paper", "fixed"):
        args = argparse.Namespace(max_examples=2, protocol=protocol)
        for name in ("tydiqa_goldp", "alpaca_farm"):
            s = registry.SETTINGS[name]
            ctx = BuildContext(eval_data, protocol, tok, run.make_render("tulu", tok, True), True)
            task = run._Task(s, ctx, args, "/nonexistent", bos=True)
            ids = run._ids(task, tok)
            for it, got in zip(task.todo, ids):
                bos_first = protocol == "fixed" or name == "alpaca_farm"
                assert got == ([tok.bos_id] if bos_first else []) + encode_prompt(tok, it.prompt, False, protocol ==
                                                                                     "paper")
            if name == "tydiqa_goldp" and protocol == "paper":
                assert "<s>" in task.todo[1].prompt and ids[1].count(tok.bos_id) == task.todo[1].prompt.count("<s>")
                assert ids[0][0] != tok.bos_id


def test_scoring_errors_are_one_line(suite, eval_ckpt, eval_data, tmp_path, capsys):
    out = str(tmp_path / "errs")
    shutil.copytree(suite, out)
    base = ["--checkpoint", eval_ckpt, "--data_dir", eval_data, "--out", out] + ARGS
    for argv, match in ((base + ["--tasks", "alpaca_farm", "--judge_model", "x", "--judge_template", "nope"],
                         "nope"),
                        (base + ["--tasks", "codex_pass1", "--timeout", "0"], "--timeout must be > 0"),
                        (["rescore", "--out", out, "--sandbox_workers", "0"], "--sandbox_workers must be >= 1")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and match in err, (argv, err)
