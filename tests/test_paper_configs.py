"""scripts/paper_configs.py's decisions without compiling: the step count, the floor ordering, the slice walk (with
a fake compiler), the merging cache, the fingerprint, and a rendered row against its plan's own figures."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("paper_configs", ROOT / "scripts" / "paper_configs.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)
GIB = 2**30


def test_two_epochs_of_the_tulu_mix():
    assert pc.TULU_EXAMPLES == 100_000 + 100_000 + 15_011 + 34_795 + 52_002 + 20_022 + 168_864
    assert pc.paper_steps() == 2 * 3834 == 7668  # 490,694 / 128 = 3833.5: the partial batch is a step
    assert pc.paper_steps(examples=256, batch=128, epochs=1) == 2


def _cand(mesh, mp, floor, rank, hbm=16):
    return {"mesh": mesh, "accum": 1, "remat": "full", "mp": mp, "floor": floor * GIB, "hbm": hbm * GIB,
            "rank": rank}


def test_order_prunes_by_floor_then_prefers_less_mp_then_lower_floor():
    cands = [_cand("a", 1, 17, 0), _cand("b", 2, 9, 1), _cand("c", 1, 12, 2), _cand("d", 1, 12, 3),
             _cand("e", 4, 5, 4)]
    assert [c["mesh"] for c in pc.order(cands)] == ["c", "d", "b", "e"]  # "a" over HBM: never compiled
    assert pc.order([_cand("a", 1, 17, 0)]) == []


def test_walk_stops_at_the_first_fit_and_skips_slices_without_a_floor():
    floors = {"v4-8": [_cand("x", 1, 40, 0)], "v4-16": [_cand("y", 1, 10, 0), _cand("z", 1, 11, 1)],
              "v4-32": [_cand("w", 1, 5, 0)], "v4-64": [_cand("v", 1, 5, 0)]}
    verdicts = {("v4-16", "y"): "at risk", ("v4-16", "z"): "fits", ("v4-32", "w"): "fits"}
    calls = []

    def compiled(s, c):
        calls.append((s, c["mesh"]))
        return {"verdict": verdicts[(s, c["mesh"])], "topology": s, "bytes_per_device": 0}

    cell = pc.walk(floors, floors.get, compiled, per_slice=1, log=lambda s: 0)
    assert cell["status"] == "fits" and cell["plan"]["topology"] == "v4-32" and cell["skipped"] == ["v4-8"]
    assert calls == [("v4-16", "y"), ("v4-32", "w")]  # one compile per slice; v4-64 never reached
    calls.clear()
    cell = pc.walk(floors, floors.get, compiled, per_slice=2, log=lambda s: 0)
    assert cell["plan"]["topology"] == "v4-16" and calls == [("v4-16", "y"), ("v4-16", "z")]
    verdicts[("v4-16", "y")] = "does not fit"  # the compiler's out-of-memory: the next size, not the next candidate
    calls.clear()
    cell = pc.walk(floors, floors.get, compiled, per_slice=2, log=lambda s: 0)
    assert cell["plan"]["topology"] == "v4-32" and calls == [("v4-16", "y"), ("v4-32", "w")]
    cell = pc.walk(floors, floors.get, lambda s, c: None, log=lambda s: 0)  # render-only, nothing cached
    assert cell["status"] == "not compiled" and cell["next"][0] == "v4-16" and cell["tried"] == []
    cell = pc.walk(["v4-8"], floors.get, compiled, log=lambda s: 0)
    assert cell["status"] == "nothing fits" and cell["plan"] is None


def test_cache_merges_writes_and_fingerprint_follows_the_code(tmp_path):
    a, b = pc.Cache(str(tmp_path / "c.json")), pc.Cache(str(tmp_path / "c.json"))
    a.put("entries", "k1", {"v": 1})
    b.put("entries", "k2", {"v": 2})  # a second writer keeps the first one's entry
    assert a.load()["entries"] == {"k1": {"v": 1}, "k2": {"v": 2}}
    for d in pc.FINGERPRINT_DIRS:
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "m.py").write_text("x = 1\n")
    before = pc.code_fingerprint(str(tmp_path))
    assert pc.code_fingerprint(str(tmp_path)) == before
    (tmp_path / "camel_jax/train/m.py").write_text("x = 2\n")
    assert pc.code_fingerprint(str(tmp_path)) != before


def test_a_fitting_row_shows_its_plans_figures():
    plan = {"verdict": "fits", "topology": "v4-64", "chips": 32, "mesh": "dp1,fsdp32,mp1", "micro_rows": 32,
            "grad_accum": 4, "remat": "save_dots", "bytes_per_device": 12 * GIB, "hbm_bytes_per_device": 30.75 * GIB,
            "memory": {"state": 2 * GIB, "temp": 10 * GIB}, "floor_bytes_per_device": 8 * GIB, "batch_size": 128,
            "step_seconds_at_mfu": 3.0, "mfu": 0.56, "plan_command": "python -m camel_jax.plan --model=llama-7b"}
    cell = {"status": "fits", "plan": plan, "tried": [("v4-32", {"mesh": "fsdp16,mp1", "accum": 8,
                                                                  "remat": "full"}, "at risk", 17 * GIB)]}
    r = pc.row("llama-7b", "v4", cell)
    assert "**v4-64** (32 chips)" in r and "32 × 4" in r and "12.00 / 30.75 (61% spare" in r and "floor 8.00" in r
    assert "3.00 s at 56.0%" in r and f"{7668 * 3 / 3600:.1f} h" in r and "v4-32 fsdp16,mp1×8 full: at risk (17.00 GiB)" in r
    assert "`python -m camel_jax.plan --model=llama-7b`" in r
    with pytest.raises(KeyError):
        pc.row("llama-7b", "v4", {"status": "bogus", "plan": None, "tried": []})
