"""The bundled TÜLU-mix sample: well-formed, small, license-documented, and rebuilt byte-identically by its script."""
import importlib.util
import json

from conftest import REPO

SAMPLE = REPO / "camel_jax" / "assets" / "tulu_mix_sample.jsonl"
MIX = ["cot", "dolly", "oasst1", "gpt4_alpaca", "code_alpaca", "sharegpt"]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_default_sample", REPO / "scripts" / "make_default_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sample_is_small_well_formed_and_short():
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert 200 <= len(rows) <= 500 and SAMPLE.stat().st_size < 1_000_000
    assert sorted({r["dataset"] for r in rows}) == sorted(MIX)
    assert len({r["id"] for r in rows}) == len(rows)
    fits = _load_script().fits
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
        assert fits(r) and r["id"].startswith("sharegpt_" if r["dataset"] == "sharegpt" else r["dataset"] + "_")
    licenses = (REPO / "camel_jax" / "assets" / "LICENSES.md").read_text(encoding="utf-8")
    assert all(f"| {d} |" in licenses for d in MIX) and "CC BY-NC 4.0" in licenses


def test_script_rebuilds_the_sample_exactly(shared_data):
    examples, counts = _load_script().build(str(shared_data))
    assert "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples) == SAMPLE.read_text(encoding="utf-8")
    assert counts["cot"]["converted"] == 2 * 33443 and counts["oasst1"]["converted"] == 553
