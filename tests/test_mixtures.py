import pytest

from camel_jax.data import mixtures as M


def test_table():
    assert len(M.DATASETS) == 12 and len(set(M.DATASETS)) == 12
    assert M.MIXTURES["tulu_human_mix"] == ("flan_v2", "cot", "dolly", "oasst1")
    assert M.MIXTURES["tulu_human_gpt_mix"] == ("flan_v2", "cot", "dolly", "oasst1", "gpt4_alpaca", "code_alpaca",
                                                "sharegpt")
    assert M.task_name("dolly") == "tulu_dolly"
    assert M.datasets_of("tulu_sharegpt") == ("sharegpt",) == M.datasets_of("sharegpt")
    # the recalled Table 1 sums quoted in open_instruct.md §2.4
    assert sum(M.PAPER_COUNTS[d] for d in M.MIXTURES["tulu_human_mix"]) == 249_806
    assert sum(M.PAPER_COUNTS[d] for d in M.MIXTURES["tulu_human_gpt_mix"]) == 490_694
    with pytest.raises(M.MixtureError, match="unknown dataset or mixture 'alpaca'"):
        M.datasets_of("alpaca")


def test_data_dir_from_flag_or_env(tmp_path, monkeypatch):
    monkeypatch.delenv(M.DATA_DIR_ENV, raising=False)
    with pytest.raises(M.MixtureError, match="CAMEL_JAX_DATA_DIR"):
        M.data_dir()
    monkeypatch.setenv(M.DATA_DIR_ENV, str(tmp_path))
    assert M.data_dir() == str(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    assert M.data_dir(str(other)) == str(other)  # the flag wins
    with pytest.raises(M.MixtureError, match="from --data_dir"):
        M.data_dir(str(tmp_path / "nope"))
    for ds in ("flan_v2", "cot", "dolly"):
        (tmp_path / f"{ds}.jsonl").write_text("")
    with pytest.raises(M.MixtureError, match=r"missing prepared file\(s\) .*oasst1.jsonl"):
        M.source_files("tulu_human_mix")
    (tmp_path / "oasst1.jsonl").write_text("")
    assert [d for d, _ in M.source_files("tulu_human_mix")] == list(M.HUMAN_MIX)
    assert M.source_files("tulu_dolly") == [("dolly", str(tmp_path / "dolly.jsonl"))]


def test_rates():
    counts = {"a": 300, "b": 100, "c": 0}
    assert M.mixture_rates(counts) == {"a": 0.75, "b": 0.25, "c": 0.0}
    assert M.mixture_rates(counts, by_rate=True) == {"a": 0.5, "b": 0.5, "c": 0.0}
    assert M.mixture_rates(counts, by_rate=True, rates={"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75, "c": 0.0}
    with pytest.raises(M.MixtureError, match="not in this mixture"):
        M.mixture_rates(counts, by_rate=True, rates={"z": 1})
    assert M.parse_rates("a:1, b:3") == {"a": 1.0, "b": 3.0}
    with pytest.raises(M.MixtureError, match="not dataset:weight"):
        M.parse_rates("a=1")
    got = M.rate_counts({"a": 10, "b": 10, "c": 10}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, total=31)
    assert got == {"a": 11, "b": 10, "c": 10} and sum(got.values()) == 31
