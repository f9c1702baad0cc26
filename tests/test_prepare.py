"""prepare + CLI: output file, printed reconciled summary, exit codes, determinism, light imports."""
import json
import os
import subprocess
import sys

import pytest

from camel_jax.data.__main__ import main
from camel_jax.data.prepare import default_out, prepare
from conftest import REPO, TEST_DATA

DOLLY = TEST_DATA / "raw" / "dolly.head5.jsonl"


def test_cli_prepare_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "dolly.jsonl"
    assert main(["prepare", "--dataset", "dolly", "--raw", str(DOLLY), "--out", str(out),
                 "--summary_json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    assert "dolly: read 5 = converted 5 + dropped 0 + bad (skipped) 0; written 5 examples" in printed
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [f"dolly_{i}" for i in range(5)]
    assert all(set(r) == {"dataset", "id", "messages"} for r in rows)
    s = json.loads((tmp_path / "s.json").read_text())
    assert (s["read"], s["written"], s["seed"], s["out"]) == (5, 5, 42, str(out))


def test_cli_bad_input_exit_code_and_skip(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(DOLLY.read_bytes() + b'{"instruction": "x", "context": "", "response": 3}\nnot json\n')
    out = tmp_path / "o.jsonl"
    assert main(["prepare", "--dataset", "dolly", "--raw", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 6: bad_type" in err and not out.exists()
    assert main(["prepare", "--dataset", "dolly", "--raw", str(bad), "--out", str(out), "--skip_bad_records"]) == 0
    printed = capsys.readouterr().out
    assert "read 7 = converted 5 + dropped 0 + bad (skipped) 2" in printed
    assert "bad_skipped bad_type: 1" in printed and "bad_skipped invalid_json: 1" in printed
    assert len(out.read_text().splitlines()) == 5


def test_cli_errors(tmp_path, capsys):
    assert main(["prepare", "--dataset", "dolly", "--raw", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--dataset", "alpaca2", "--raw", "x"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(["prepare", "--dataset", "dolly", "--raw", str(DOLLY), "--out", str(tmp_path / "o.jsonl"),
                 "--max_length", "100"]) == 2
    assert "--max_length do not apply to dolly" in capsys.readouterr().err


def test_data_dir_from_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAMEL_JAX_DATA_DIR", str(tmp_path))
    assert default_out("cot") == str(tmp_path / "cot.jsonl")
    assert main(["prepare", "--dataset", "dolly", "--raw", str(DOLLY)]) == 0
    assert (tmp_path / "dolly.jsonl").exists()
    monkeypatch.delenv("CAMEL_JAX_DATA_DIR")
    with pytest.raises(ValueError, match="CAMEL_JAX_DATA_DIR"):
        default_out("cot")


def test_outputs_are_byte_identical_per_seed(tmp_path):
    runs = []
    for i, seed in enumerate((42, 42, 7)):
        out = tmp_path / f"{i}.jsonl"
        prepare("super_ni", str(TEST_DATA / "raw" / "super_ni"), str(out), seed=seed)
        runs.append(out.read_bytes())
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_module_entry_point_and_light_imports(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "a.jsonl"
    r = subprocess.run([sys.executable, "-m", "camel_jax.data", "prepare", "--dataset", "stanford_alpaca", "--raw",
                        str(TEST_DATA / "raw" / "alpaca_data.head6.json"), "--out", str(out), "--seed", "1"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "written 6 examples" in r.stdout and len(out.read_text().splitlines()) == 6
    code = ("import sys, camel_jax.data.prepare, camel_jax.data.__main__; "
            "print(sorted(m for m in ('tensorflow', 'seqio', 'torch', 'jax', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_download_script_covers_every_dataset_and_parses():
    script = REPO / "scripts" / "download_data.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    from camel_jax.data.converters import DATASETS

    listed = text.split('ALL="')[1].split('"')[0].split()
    assert sorted(listed) == sorted(DATASETS)
    for name in DATASETS:
        assert f"    {name})" in text or f"    {name})  #" in text


def test_outputs_do_not_depend_on_listing_order(tmp_path, monkeypatch):
    """Folders read through globbing (sharegpt *.json) or listing (FLAN CoT TSVs) give the same bytes whatever
    order the file system lists them in."""
    from camel_jax.data.converters import _common
    from test_converters_sharegpt import WordTokenizer

    recs = json.loads((TEST_DATA / "raw" / "sharegpt.head4.json").read_text())
    (tmp_path / "sg").mkdir()
    for i, name in enumerate(["c.json", "a.json", "b.json"]):
        (tmp_path / "sg" / name).write_text(json.dumps(recs[i:i + 2]))
    real_glob, real_listdir = _common.glob.glob, os.listdir
    runs = []
    for flip in (False, True):
        order = (lambda xs: sorted(xs, reverse=True)) if flip else (lambda xs: sorted(xs))
        monkeypatch.setattr(_common.glob, "glob", lambda pat, _o=order: _o(real_glob(pat)))
        monkeypatch.setattr(os, "listdir", lambda p, _o=order: _o(real_listdir(p)))
        outs = []
        for dataset, raw, kw in (("sharegpt", tmp_path / "sg", {"tokenizer": WordTokenizer()}),
                                 ("cot", TEST_DATA / "raw" / "flan", {"zero_shot": 6, "few_shot": 6})):
            out = tmp_path / f"{dataset}.{flip}.jsonl"
            prepare(dataset, str(raw), str(out), **kw)
            outs.append(out.read_bytes())
        runs.append(outs)
    assert runs[0] == runs[1] and all(runs[0])
