"""The results table: the paper's 11 columns and its Average, the mean of six benchmark groups (checked against the
TÜLU 7B model card's row, open_instruct.md §4.9 and §5), columns not run, and a partial average marked as one."""
import json

import pytest

from camel_jax.evaluate import table
from camel_jax.evaluate.task import Decoding, Setting

# TÜLU 7B's row of the model card (open_instruct.md §5): its Average is 33.1.
TULU_7B = {"MMLU 0-shot": 44.5, "MMLU 5-shot": 47.0, "GSM Direct": 6.0, "GSM CoT": 27.0, "BBH Direct": 38.1,
           "BBH CoT": 39.2, "TydiQA GP": 45.7, "TydiQA CB": 7.7, "Codex P@1": 17.5, "Codex P@10": 27.8,
           "AlpacaFarm win rate": 48.3}


def _fake_settings():
    return [Setting(name=f"t{i}", group=g, column=c, metric="m", kind="generate", chat=True, items=lambda ctx: [],
                    score=lambda r: {}, decoding=Decoding(8), extract=lambda t, i: t)
            for i, (c, g) in enumerate(table.COLUMNS)]


def _write(out, settings, values):
    for s in settings:
        if s.column in values:
            (out / s.name).mkdir()
            (out / s.name / "metrics.json").write_text(json.dumps({"m": values[s.column]}))


def test_average_is_the_mean_of_six_groups(tmp_path):
    settings = _fake_settings()
    _write(tmp_path, settings, TULU_7B)
    t = table.write(str(tmp_path), settings, "tulu-7b")
    assert round(t["average"], 1) == 33.1 and t["partial_average"] is None
    md = (tmp_path / "table.md").read_text()
    assert md.splitlines()[2] == ("| tulu-7b | 44.5 | 47.0 | 6.0 | 27.0 | 38.1 | 39.2 | 45.7 | 7.7 | 17.5 | 27.8 | "
                                  "48.3 | 33.1 |")
    assert json.loads((tmp_path / "table.json").read_text())["groups"]["mmlu"] == pytest.approx(45.75)


def test_columns_not_run_and_partial_average(tmp_path):
    settings = _fake_settings()
    _write(tmp_path, settings, {"MMLU 0-shot": 40.0, "GSM CoT": 20.0, "GSM Direct": 10.0})
    (tmp_path / "t10").mkdir()
    (tmp_path / "t10" / "metrics.json").write_text(json.dumps({"m": None, "status": "not judged"}))
    t = table.build(str(tmp_path), settings)
    assert t["average"] is None and t["partial_average"] == pytest.approx((40 + 15) / 2)
    assert [c["status"] for c in t["columns"]][-2:] == ["not run", "not judged"]
    md = table.markdown(t, "m")
    assert "| m | 40.0 | not run | 10.0 | 20.0 | not run |" in md and "| 27.5* |" in md and "2 of 6" in md
