"""`python -m camel_jax.report`: evaluation folders laid out as camel_jax.evaluate writes them (run.json, per task
predictions.jsonl, metrics.json and run.json) and annotations as the app exports them, built into one page that a
real headless chromium shows with its table and charts; hostile names stay text; bad input is one error line."""
import pathlib

import numpy as np
import pytest

from camel_jax.evaluate import records as R
from camel_jax.evaluate import registry, run
from camel_jax.human_eval.records import Annotation, write_annotations
from camel_jax.report import results
from camel_jax.report.__main__ import main

# Markup that would run if unescaped, and matplotlib mathtext that would fail the chart if not escaped.
HOSTILE = "<img src=x onerror=\"window.pwned=1\">$\\undefinedcmd$"
# TÜLU 7B's published row (the model card's, open_instruct.md §5): a folder holding exactly these scores must
# reproduce the card's Average, 33.1.
TULU_7B = (44.5, 47.0, 6.0, 27.0, 38.1, 39.2, 45.7, 7.7, 17.5, 27.8, 48.3)


def write_eval_folder(out: pathlib.Path, checkpoint: str, scores: dict, subset: dict = ()):
    """The files `python -m camel_jax.evaluate --out OUT` leaves (evaluate/records.py's layout), each setting's
    metrics.json holding `scores[column]` as its metric."""
    R.check_identity(str(out), {"protocol": "fixed", "checkpoint": f"/ckpts/{checkpoint}", "chat_format": "tulu",
                                "max_new_tokens": 512, "dtype": "bfloat16"})
    for s in registry.SETTINGS.values():
        if s.column not in scores:
            continue
        n, items = dict(subset).get(s.column, (10, 10))
        with R.Appender(str(out / s.name / R.PREDICTIONS)) as f:
            for i in range(n):
                f.write({"id": f"{s.name}-{i}", "prompt": "p", "correct": True})
        R.write_json(str(out / s.name / R.METRICS), {s.metric: scores[s.column], "records": n, "selected": n})
        R.write_json(str(out / s.name / R.RUN_FILE), {"task": s.name, "counts": {"items": items, "selected": n}})


def scored_eval_folder(out: pathlib.Path, checkpoint: str):
    """MMLU 0-shot (2 of 5 right: 40.0) and GSM CoT (1 of 5 right on a 5-of-200 subset: 20.0) scored by
    camel_jax.evaluate's own score_task from saved predictions, as `evaluate rescore` does."""
    R.check_identity(str(out), {"protocol": "fixed", "checkpoint": f"/ckpts/{checkpoint}", "chat_format": "tulu",
                                "max_new_tokens": 512, "dtype": "bfloat16"})
    meta = {"subject": "anatomy", "subcategory": "health", "category": "other", "shots": 0, "shots_asked": 0}
    for name, answers, gold, items, extra in (("mmlu_0shot", "AABCD", "AADDA", 5, {"meta": meta}),
                                             ("gsm_cot", "12345", "19999", 200, {})):
        ids = [f"{name}-{i}" for i in range(5)]
        with R.Appender(str(out / name / R.PREDICTIONS)) as f:
            for i, a, g in zip(ids, answers, gold):
                f.write({"id": i, "prompt": "p", "answer": a, "gold": g, "correct": a == g, **extra})
        R.write_json(str(out / name / R.RUN_FILE), {"task": name, "counts": {"items": items, "selected": 5}})
        run.score_task(str(out), registry.SETTINGS[name], ids)


def human_file(path: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    anns = []
    for i in range(12):
        for who, t in (("ann1", i), ("ann2", 30 + i)) if i < 6 else (("ann1", i),):
            for a, b in (("tulu_65B", "chatgpt"), (HOSTILE, "tulu_65B")):
                if rng.random() < 0.5:
                    a, b = b, a
                anns.append(Annotation(
                    instance_id=f"item{i}", model_a=a, model_b=b, completion_a="</pre><script>x</script>",
                    completion_b="fine", completion_a_is_acceptable=rng.choice(["yes", "no"]),
                    completion_b_is_acceptable="yes", preference=str(rng.choice(
                        ["a-is-better", "a-is-slightly-better", "tie", "b-is-slightly-better", "b-is-better"])),
                    evaluator=who, timestamp=f"2024-02-01 12:{t:02d}:00"))
    write_annotations(str(path), anns)
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    columns = [c for c, _ in results.table.COLUMNS]
    write_eval_folder(base / "full", "tulu-7b-replica", dict(zip(columns, TULU_7B)))
    scored_eval_folder(base / "partial", HOSTILE)
    out = base / "site" / "report.html"
    rc = main(["--results", str(base / "full"), str(base / "partial"), "--human", str(human_file(base / "h.jsonl")),
               "--out", str(out), "--n_resamples", "200"])
    assert rc == 0
    return out


def test_the_table_holds_evaluated_and_published_rows(report):
    rows = results.evaluated_rows([str(report.parent.parent / "full"), str(report.parent.parent / "partial")])
    assert rows[0]["model"] == "tulu-7b-replica" and round(rows[0]["average"], 1) == 33.1
    assert rows[1]["average"] is None and rows[1]["partial_average"] == pytest.approx(30.0)  # mmlu 40, gsm 20
    assert rows[1]["cells"][3]["subset"] == (5, 200) and rows[1]["cells"][1]["status"] == "not run"
    published, source = results.published()
    assert [r["model"] for r in published] == ["Tulu 7B", "Tulu 13B", "Tulu 30B"] and "open_instruct.md" in source
    assert tuple(published[0]["cells"][i]["value"] for i in range(11)) == TULU_7B
    text = report.read_text()
    assert HOSTILE not in text and "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in text
    assert "http://" not in text and "https://" not in text  # nothing loaded from outside
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == sorted([f"report_{g}.png" for g in results.table.GROUPS]
                          + ["report_acceptance.png", "report_preference.png"])


def test_the_page_shows_table_and_charts_in_a_real_browser(report, page):
    page.goto(report.as_uri())
    assert page.evaluate("window.pwned") is None  # the hostile model name did not run
    rows = page.locator("#benchmarks tbody tr")
    assert rows.count() == 5
    first = rows.nth(0).locator("td").all_text_contents()
    assert first[0] == "tulu-7b-replica" and first[1:3] == ["44.5", "47.0"] and first[-1] == "33.1"
    assert rows.nth(1).locator("td").nth(0).text_content() == HOSTILE
    assert rows.nth(1).locator("td").nth(4).text_content() == "20.0\u2020"
    assert "published" in rows.nth(2).text_content()
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == 8 and min(widths) > 0
    assert page.locator("h3").all_text_contents() == [f"{HOSTILE} vs tulu_65B", "chatgpt vs tulu_65B"]
    shot = report.parent / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] > 800 and pixels[..., :3].std() > 0.05  # not blank


def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "absent"), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.strip() == f"python -m camel_jax.report: error: --results {tmp_path / 'absent'}: " \
                                              f"no such folder"
    (tmp_path / "notrun").mkdir()
    assert main(["--results", str(tmp_path / "notrun"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no run.json; not an evaluation folder" in capsys.readouterr().err
    assert main(["--results", str(tmp_path), "--out", str(tmp_path / "r.txt")]) == 2
    assert "expected a file name ending in .html" in capsys.readouterr().err
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"instance_id": "1"}\n')
    write_eval_folder(tmp_path / "ok", "m", {"MMLU 0-shot": 1.0})
    assert main(["--results", str(tmp_path / "ok"), "--human", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    assert f"{bad}:1: missing field 'model_a'" in capsys.readouterr().err
    good = human_file(tmp_path / "good.jsonl")
    assert main(["--results", str(tmp_path / "ok"), "--human", str(good), "--out", str(tmp_path / "r.html"),
                 "--n_resamples", "0"]) == 2
    assert "--n_resamples 0: must be at least 1" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))  # nothing drawn before every input was checked
    (tmp_path / "h.txt").write_text("")
    assert main(["--results", str(tmp_path / "ok"), "--human", str(tmp_path / "h.txt"), "--out",
                 str(tmp_path / "r.html")]) == 2
    assert "expected the app's .sqlite database or a .jsonl/.csv" in capsys.readouterr().err


def test_the_apps_database_reads_as_its_export(tmp_path):
    """--human FILE.sqlite goes through the app's Store: the same annotations as the JSONL they were imported from."""
    from camel_jax.human_eval.db import Store
    from camel_jax.human_eval.records import read_annotations
    from camel_jax.report.build import read_human

    src = human_file(tmp_path / "h.jsonl")
    db = str(tmp_path / "study.sqlite")
    Store(db).import_annotations(read_annotations(str(src)), keep_stored_text=True)  # the fixture's texts ignore sides
    key = lambda a: (a.evaluator, a.instance_id, a.pair)  # noqa: E731
    got = sorted(read_human(db), key=key)
    want = sorted(read_human(str(src)), key=key)
    assert [(a.model_a, a.preference, a.completion_a_is_acceptable) for a in got] == \
        [(a.model_a, a.preference, a.completion_a_is_acceptable) for a in want] and len(got) == 36
