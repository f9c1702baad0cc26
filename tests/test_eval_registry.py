"""The task table: names, groups and --tasks resolution with errors that list what exists, settings checked
against the results table's columns, and the --max_examples subsets the driver takes."""
import pytest

from camel_jax.cli import UsageError
from camel_jax.evaluate import registry
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
    assert "group bbh: bbh_direct, bbh_cot" in text and "(no module yet)" not in text


def test_all_six_benchmarks_fill_the_eleven_columns():
    from camel_jax.evaluate import table

    assert registry.BENCHMARK_MODULES == ("mmlu", "gsm", "bbh", "tydiqa", "humaneval", "alpaca_farm")
    assert [s.column for s in registry.SETTINGS.values()] == [c for c, _ in table.COLUMNS]
    assert all(registry.groups()[g] for g in registry.GROUPS)
    assert [s.name for s in registry.SETTINGS.values() if s.paper_bos] == ["alpaca_farm"]


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
