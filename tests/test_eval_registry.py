"""The task table: names, groups and --tasks resolution with errors that list what exists; the results table with
the paper's Average (checked against the TÜLU 7B model card's row, open_instruct.md §4.9 and §5)."""
import json

import pytest

from camel_jax.cli import UsageError
from camel_jax.evaluate import registry, table
from camel_jax.evaluate.task import Decoding, Setting


def test_resolution():
    assert [s.name for s in registry.resolve("all")] == list(registry.SETTINGS)
    assert [s.name for s in registry.resolve("gsm")] == ["gsm_direct", "gsm_cot"]
    assert [s.name for s in registry.resolve("gsm_cot, mmlu_0shot,gsm_cot")] == ["mmlu_0shot", "gsm_cot"]
    assert [s.name for s in registry.resolve("mmlu,gsm_direct")] == ["mmlu_0shot", "mmlu_5shot", "gsm_direct"]
    with pytest.raises(UsageError, match=r"unknown task 'mmlu_3shot'; tasks: mmlu_0shot, mmlu_5shot, gsm_direct"):
        registry.resolve("gsm,mmlu_3shot")
    with pytest.raises(UsageError, match="empty"):
        registry.resolve(" , ")
    assert registry.GROUPS == ("mmlu", "gsm", "bbh", "tydiqa", "codex", "alpaca_farm")


def test_a_setting_must_name_a_table_column(monkeypatch):
    import types
    import sys

    bad = Setting(name="bbh_x", group="bbh", column="BBH 3-shot", metric="em", kind="generate", chat=True,
                  items=lambda ctx: [], score=lambda r: {}, decoding=Decoding(8), extract=lambda t, i: t)
    monkeypatch.setitem(sys.modules, "camel_jax.evaluate.fake_bbh", types.SimpleNamespace(SETTINGS=(bad,)))
    with pytest.raises(ValueError, match="column 'BBH 3-shot' of group 'bbh' is not one of the table's"):
        registry._collect(("fake_bbh",))


def test_listing_names_every_task_and_group():
    text = registry.listing()
    for name in registry.SETTINGS:
        assert name in text
    assert "group bbh: (no module yet)" in text


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


def test_max_examples_subset_is_nested_and_spread():
    from camel_jax.evaluate.run import subset
    from camel_jax.evaluate.task import Item

    items = [Item(f"{s}/{i}", "p", "A", {"subject": s}) for s, n in (("a", 3), ("b", 1), ("c", 2)) for i in range(n)]
    key = lambda it: it.meta["subject"]  # noqa: E731
    assert [it.id for it in subset(items, 4, key)] == ["a/0", "b/0", "c/0", "a/1"]
    assert [it.id for it in subset(items, None, key)] == ["a/0", "b/0", "c/0", "a/1", "c/1", "a/2"]
    for n in range(1, 7):  # a larger N continues a smaller one
        assert subset(items, n, key) == subset(items, None, key)[:n]
    assert subset(items, 2) == items[:2]


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
