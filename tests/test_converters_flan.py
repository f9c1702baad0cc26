"""flan: cot from FLAN-formatted jsonl and from FLAN's raw CoT TSVs with FLAN's templates; flan_v2 resampling."""
import json
import os
import random
import shutil

import pytest

from camel_jax.data.converters import flan_cot_tsv as C
from camel_jax.data.converters.flan import FLAN_V2_PORTIONS, flan_prompt
from camel_jax.data.prepare import convert_dataset
from camel_jax.data.records import RecordError, Tally
from conftest import TEST_DATA

RAW = TEST_DATA / "raw" / "flan"


def test_flan_templates_read_verbatim():
    t = C.load_templates(str(RAW / "templates.py"))
    assert t.zero_shot["cot_strategyqa"][0] == ("{question}\nThink slowly and carefully, before giving your answer.",
                                                "{chain_of_thought}\nSo, the answer is {answer}.")
    assert len(t.zero_shot["stream_aqua"]) == 15 and len(t.few_shot["cot_creak"]) == 10
    p = t.few_shot["cot_strategyqa"][1]
    assert (p.inputs_prefix, p.targets_prefix, p.x_y_delimiter, p.example_separator) == \
        ("Question: ", "Answer: ", "\n", "\n\n")
    assert p.final_suffix == "" and p.input_pattern == "{{inputs}}{final_suffix}"  # class defaults


def test_tsv_rows_unescape_question_and_rationale_only():
    rows = C.read_cot_rows(str(RAW / "cot_data"), Tally())
    assert [t for t, _ in rows] == ["stream_aqua"] * 4 + ["cot_creak"] * 5 + ["cot_strategyqa"] * 6
    q, a, c = rows[0][1]
    assert "\nOptions:\n(A) 300" in q and "\\n" not in q and a == "(C)" and c.startswith("1/7:1/7:1/14 = 2:2:1\n")


def test_few_shot_layout_follows_seqio():
    p = C.FewShotPattern("Q {question}", "{chain_of_thought} A {answer}.", "<", ">", "|", "##", "!",
                         "{{inputs}}{final_suffix}")
    t = C.CotTemplates({}, {"x": [p]})
    r = C.render_few_shot(("q0", "a0", "c0"), [("q1", "a1", "c1")], t, "x", random.Random(0))
    assert r["inputs"] == "<Q q1|>c1 A a1.##<Q q0|>!" and r["targets"] == "c0 A a0."
    p2 = C.FewShotPattern("{question}", "{answer}", "Q: ", "A: \n", "\n", "\n\n", "", "{{inputs}}{final_suffix}")
    r = C.render_few_shot(("q0", "a0", "c0"), [("q1", "a1", "c1")], C.CotTemplates({}, {"x": [p2]}), "x",
                          random.Random(0))
    assert r["inputs"] == "Q: q1\nA: \na1\n\nQ: q0\nA:"  # the final targets prefix is right-stripped (seqio)


def test_cot_from_tsv_counts_determinism_and_listing_order(monkeypatch):
    got, t = convert_dataset("cot", str(RAW), seed=42, zero_shot=8, few_shot=6)
    assert len(got) == 14 and t.read == 15 and t.converted + t.dropped["not_sampled"] == 15
    assert [g["id"] for g in got] == [f"cot_{i}" for i in range(14)]
    templates = C.load_templates(str(RAW / "templates.py"))
    rows = dict((r[1][0], r) for r in C.read_cot_rows(str(RAW / "cot_data"), Tally()))
    for g in got[:8]:  # zero-shot: some FLAN template filled with some row
        user, answer = g["messages"][0]["content"], g["messages"][1]["content"]
        task, row = next(r for q, r in rows.items() if q in user)
        fills = {(flan_prompt(C._fill(i, row)), C._fill(o, row)) for i, o in templates.zero_shot[task]}
        assert (user, answer) in fills
    for g in got[8:]:  # few-shot: two exemplars of the query's task, then the query
        assert sum(q in g["messages"][0]["content"] for q in rows) == 3
    again, _ = convert_dataset("cot", str(RAW), seed=42, zero_shot=8, few_shot=6)
    assert again == got
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: list(reversed(real_listdir(p))))
    reordered, _ = convert_dataset("cot", str(RAW), seed=42, zero_shot=8, few_shot=6)
    assert reordered == got


def _write_jsonl(path, items):
    path.write_text("".join(json.dumps(x) + "\n" for x in items))


def test_cot_from_flan_jsonl_matches_reference(tmp_path):
    zs = [{"inputs": f"q{i}" + (":" if i % 3 == 0 else ""), "targets": f"t{i}"} for i in range(30)]
    fs = [{"inputs": f"fq{i}\n", "targets": f"ft{i}"} for i in range(20)]
    _write_jsonl(tmp_path / "cot_zsopt.jsonl", zs)
    _write_jsonl(tmp_path / "cot_fsopt.jsonl", fs)
    got, t = convert_dataset("cot", str(tmp_path), seed=9, zero_shot=10, few_shot=25)
    random.seed(9)
    ref = random.sample(zs, k=10) + fs
    assert [(g["messages"][0]["content"], g["messages"][1]["content"]) for g in got] == \
        [(flan_prompt(r["inputs"]), r["targets"]) for r in ref]
    assert flan_prompt("a:") == "a:" and flan_prompt("a: ") == "a: " and flan_prompt("a") == "a\n"
    assert (t.read, t.converted, t.dropped["not_sampled"], t.written) == (50, 30, 20, 30)
    (tmp_path / "cot_fsopt.jsonl").write_text('{"inputs": "x", "targets": "y"}\n{"inputs": "x"}\n')
    with pytest.raises(RecordError, match=r"cot_fsopt\.jsonl: line 2: missing_field: no field 'targets'"):
        convert_dataset("cot", str(tmp_path))
    (tmp_path / "cot_fsopt.jsonl").unlink()
    with pytest.raises(RecordError, match="cot_fsopt.jsonl: missing"):
        convert_dataset("cot", str(tmp_path))


def test_flan_v2_resample_matches_reference(tmp_path):
    portions = {"cot_zsopt": 0.6, "dialog_fsopt": 0.4}
    data = {s: [{"inputs": f"{s}-{i}", "targets": str(i)} for i in range(n)] for s, n in
            (("cot_zsopt", 40), ("dialog_fsopt", 25))}
    for s, items in data.items():
        _write_jsonl(tmp_path / f"{s}.jsonl", items)
    got, t = convert_dataset("flan_v2", str(tmp_path), seed=42, total=50, portions=portions)
    random.seed(42)
    ref = []
    for s, p in portions.items():
        keep = set(random.sample(range(len(data[s])), int(p * 50)))
        ref += [x["inputs"] + "\n" for i, x in enumerate(data[s]) if i in keep]
    assert [g["messages"][0]["content"] for g in got] == ref and len(got) == 50
    assert (t.read, t.dropped["not_sampled"]) == (65, 15)
    assert abs(sum(FLAN_V2_PORTIONS.values()) - 1) < 1e-9 and len(FLAN_V2_PORTIONS) == 14
    with pytest.raises(RecordError, match="missing submix file.*flan_zsopt.jsonl.*flan_v2_resampled_100k.jsonl"):
        convert_dataset("flan_v2", str(tmp_path))
    ready = tmp_path / "flan_v2_resampled_100k.jsonl"
    _write_jsonl(ready, data["cot_zsopt"][:5])
    got, _ = convert_dataset("flan_v2", str(tmp_path))
    assert [g["id"] for g in got] == [f"flan_v2_{i}" for i in range(5)]


def test_bad_tsv_inputs(tmp_path):
    shutil.copytree(RAW, tmp_path / "f")
    (tmp_path / "f" / "cot_data" / "mystery_train.tsv").write_text("a\tb\tc\n")
    with pytest.raises(RecordError, match=r"mystery_train\.tsv: unknown FLAN CoT file"):
        convert_dataset("cot", str(tmp_path / "f"))
    (tmp_path / "f" / "cot_data" / "mystery_train.tsv").unlink()
    with open(tmp_path / "f" / "cot_data" / "creak_train.tsv", "ab") as f:
        f.write(b"only a question\n")
    with pytest.raises(RecordError, match=r"creak_train\.tsv: line 6: missing_field"):
        convert_dataset("cot", str(tmp_path / "f"))
    _, t = convert_dataset("cot", str(tmp_path / "f"), skip_bad_records=True)
    assert t.bad["missing_field"] == 1 and t.read == 16


def test_real_flan_cot_tsvs(shared_data, monkeypatch):
    raw = shared_data / "flan_v2"
    got, t = convert_dataset("cot", str(raw), seed=42)
    n_rows = sum(sum(1 for line in open(p, "rb") if line.strip()) for p in (raw / "cot_data").glob("*_train.tsv"))
    assert t.read == n_rows == 33443 and len(got) == 2 * n_rows and not t.bad
    small, _ = convert_dataset("cot", str(raw), seed=42, zero_shot=50, few_shot=50)
    again, _ = convert_dataset("cot", str(raw), seed=42, zero_shot=50, few_shot=50)
    assert small == again and len(small) == 100
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: sorted(real_listdir(p), reverse=True))
    assert convert_dataset("cot", str(raw), seed=42, zero_shot=50, few_shot=50)[0] == small
    assert any("Options:\n(A)" in g["messages"][0]["content"] for g in got)


def test_flan_v2_resample_on_real_flan_text(shared_data, tmp_path):
    """No raw FLAN v2 export is available offline; resample FLAN-formatted CoT submixes rendered from real TSVs."""
    raw = shared_data / "flan_v2"
    zs, fs = C.render_submixes(str(raw / "cot_data"), C.load_templates(str(raw / "templates.py")),
                               random.Random(0), Tally(), 300, 300)
    _write_jsonl(tmp_path / "cot_zsopt.jsonl", [{"inputs": r["inputs"], "targets": r["targets"]} for r in zs])
    _write_jsonl(tmp_path / "cot_fsopt.jsonl", [{"inputs": r["inputs"], "targets": r["targets"]} for r in fs])
    portions = {"cot_zsopt": 0.5, "cot_fsopt": 0.5}
    got, t = convert_dataset("flan_v2", str(tmp_path), total=200, portions=portions)
    assert len(got) == 200 and t.read == 600 and t.dropped["not_sampled"] == 400
    assert got == convert_dataset("flan_v2", str(tmp_path), total=200, portions=portions)[0]
    assert {g["messages"][1]["content"] for g in got} <= {r["targets"] for r in zs + fs}
