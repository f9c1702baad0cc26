"""The planner on real TPU compiles (for, not on, a v4-8 slice): a small preset fits with per-device figures that
add up, the same compile judged against a budget it exceeds is "at risk", llama-65b on v4-8 is the compiler's
out-of-memory reported as an answer, and the search returns the first candidate that fits with its command."""
import pytest

from camel_jax.plan.planner import AT_RISK, FITS, NO_FIT, parse_oom, plan_run
from camel_jax.plan.search import candidates, search
from camel_jax.plan.topology import parse_topology
from camel_jax.train import config as C


@pytest.fixture(autouse=True)
def _libtpu():
    from tpu_util import tpu_devices

    tpu_devices()  # skips (with the reason) without libtpu


def _tiny(**train):
    cfg = C.base_config()
    cfg.model, cfg.data.max_seq_length, cfg.train.batch_size = "tiny-mha", 128, 16
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="module")
def fits():
    return plan_run(_tiny(grad_accum=2), parse_topology("v4-8"), "fsdp4")


def test_small_preset_fits_and_its_figures_add_up(fits):
    p, m = fits, fits.memory
    assert p.verdict == FITS and p.fits and p.mesh == "dp1,fsdp4,mp1"
    cfg = p.spec.model
    norms = (2 * cfg.num_layers + 1) * cfg.hidden_size  # replicated; everything else split 4 ways on embed
    assert m["params"] == 4 * (cfg.num_params() - norms) // 4 + 4 * norms
    assert m["opt_state"] == 2 * m["params"] + 4 * 4  # AdamW mu and nu; 3 step counters and the injected lr
    assert m["gradients"] == m["params"]  # fp32 weights: the accumulator is their size
    assert p.bytes_per_device == m["argument"] + m["output"] - m["alias"] + m["temp"] + m["code"]
    assert m["argument"] >= m["state"] + m["batch"] and m["alias"] >= m["state"]  # donated: updated in place
    assert p.hbm_bytes == parse_topology("v4-8").usable_bytes > p.bytes_per_device
    assert 0 < p.xla_flops_per_device < p.flops["total"] / 4  # a scan body (layer, micro-batch) costed once
    assert p.step_seconds(1.0) == pytest.approx(p.flops["total"] / 4 / 275e12)
    assert p.step_seconds() == pytest.approx(p.step_seconds(1.0) / 0.56)
    assert p.train_command() == "python -m camel_jax.train --mesh=dp1,fsdp4,mp1"


def test_accepted_but_over_budget_is_at_risk(fits):
    budget = fits.bytes_per_device - 1  # the compiler's own limit stays v4's 30.75 GiB: it accepts the program
    p = fits.with_budget(budget)  # what plan_run(..., hbm_bytes=budget) returns, without compiling again
    assert p.verdict == AT_RISK and not p.fits and p.oom is None
    assert p.bytes_per_device == fits.bytes_per_device > p.hbm_bytes and fits.verdict == FITS
    assert p.with_budget(fits.hbm_bytes).verdict == FITS


def test_compiler_oom_is_an_answer():
    cfg = C.paper_config("llama-65b", "tulu_human_gpt_mix")
    p = plan_run(cfg, parse_topology("v4-8"), "fsdp4")
    assert p.verdict == NO_FIT and not p.fits
    assert p.oom["available_bytes"] == pytest.approx(30.75 * 2**30, rel=1e-3)
    assert p.oom["required_bytes"] > 5 * p.oom["available_bytes"]
    assert "RESOURCE_EXHAUSTED" in p.oom["message"]
    assert p.bytes_per_device == p.memory["state"] + p.memory["batch"] + p.oom["required_bytes"]


def test_parse_oom_messages():
    a = parse_oom("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries "
                  "(122.21G) exceeds available HBM (15.75G).")
    assert a["required_bytes"] == int(122.21 * 2**30) and a["available_bytes"] == int(15.75 * 2**30)
    b = parse_oom("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
                  "Used 63.80G of 30.75G hbm. Exceeded hbm capacity by 33.05G.")
    assert b["required_bytes"] == int(63.80 * 2**30) and b["available_bytes"] == int(30.75 * 2**30)
    assert parse_oom("INVALID_ARGUMENT: something else") is None


def test_search_candidates_and_first_fit():
    cfg = _tiny()
    cands = candidates(cfg, parse_topology("v4-8"))
    assert cands[0] == ("fsdp4,mp1", 1, "none") and cands[-1][2] == "full"
    assert ("fsdp4,mp1", 16, "save_dots") not in cands  # 1 row per micro-batch cannot split over fsdp4
    assert all(16 % accum == 0 and (16 // accum) % int(m[4]) == 0 for m, accum, _ in cands)
    best, tried = search(cfg, parse_topology("v4-8"), ("--config=configs/base.py",), max_compiles=2, log=lambda s: 0)
    assert best is tried[0] and best.fits and best.spec.grad_accum == 1 and best.spec.model.remat == "none"
    assert best.train_command() == ("python -m camel_jax.train --config=configs/base.py --config.train.grad_accum=1 "
                                    "--config.train.remat=none --mesh=dp1,fsdp4,mp1")


def test_analytic_floor_by_hand(fits):
    """tiny-mha (d 64, f 176, 4 heads of 16, vocab 256), 2 rows per device (16 rows / 2 micro-batches / fsdp4),
    128 slots, bf16, save_dots, loss chunks of 512 slots (longer than the row: the whole row)."""
    fl, tokens = fits.floor, 2 * 128
    assert fl["saved_activations"] == 2 * tokens * ((4 + 8) * 16 + 64 + 2 * 176 + 64 + 64) * 2
    assert fl["layer_working_set"] == 2 * tokens * (((4 + 8) * 16 + 2 * 64 + 2 * 176) + 64 + 128 + 64 + 176) * 2
    assert fl["loss_chunk"] == 2 * 2 * 128 * 256 * 4
    assert fl["head_kernel"] == 64 * 256 * 2  # [D, V] gathered whole (mp1) in bf16
    assert fl["head_partial_gradient"] == 64 * 256 * 4  # one chunk's fp32 h^T dlogits
    assert fl["gathered_weights"] == 2 * (64 * 8 * 16 * 2 + 3 * 64 * 176) * 2
    assert fl["gradient_accumulator"] == fits.memory["gradients"] and fl["state"] == fits.memory["state"]
    assert fl["gradients"] == fl["compute_copy"] == fits.memory["gradients"] // 2  # bf16 against fp32 params
    assert fl["floor"] == sum(v for k, v in fl.items() if k != "floor") < fits.bytes_per_device
