"""Orbax train checkpoints: bitwise round trip, restore onto another mesh, keep-last-K, async save with the state
donated right after, half-written checkpoints never loaded, model_config.json."""
import json
import os

import jax
import numpy as np
import pytest

from camel_jax.model.mesh import build_mesh
from camel_jax.model.config import get_preset
from camel_jax.train.checkpointing import Checkpointer
from camel_jax.train.optimizer import make_optimizer
from camel_jax.train.state import abstract_train_state, init_train_state, sharded_abstract_state, state_shardings

CFG = get_preset("tiny-gqa", dtype="float32")
OPT = make_optimizer(1e-3, total_steps=20)


def _make_state(mesh):
    """A state with non-trivial moments (mu = params / 2, nu = params ** 2), sharded on `mesh`."""
    shardings = state_shardings(CFG, OPT, mesh)
    state = init_train_state(CFG, OPT, jax.random.PRNGKey(0), shardings=shardings)
    adam = state["opt_state"].inner_state[1][0]
    adam = adam._replace(mu=jax.tree.map(lambda p: p * 0.5, state["params"]),
                         nu=jax.tree.map(lambda p: p * p, state["params"]))
    inner = (state["opt_state"].inner_state[0], (adam,) + tuple(state["opt_state"].inner_state[1][1:]))
    state["opt_state"] = state["opt_state"]._replace(inner_state=inner)
    return state


_BASE = {}


def _state(mesh, step=0):
    """The (cached) state at `step`, its arrays freshly copied so a test may donate them."""
    if mesh not in _BASE:
        _BASE[mesh] = _make_state(mesh)
    base = _BASE[mesh]
    state = jax.tree.map(lambda x: x.copy(), base)
    state["step"] = jax.device_put(np.int32(step), base["step"].sharding)
    return state


def _host(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _assert_bitwise(a, b):
    ta, tb = jax.tree.structure(a), jax.tree.structure(b)
    assert ta == tb, f"{ta} != {tb}"
    for x, y in zip(_host(a), _host(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.fixture(scope="module")
def fsdp8():
    return build_mesh("fsdp8", CFG)


def test_round_trip_bitwise_and_onto_another_mesh(tmp_path, fsdp8):
    state = _state(fsdp8, step=3)
    want = jax.device_get(state)
    meta = {"data_state": {"epoch": 1, "index": 17}, "config": {"train": {"lr": 1e-3}}, "rng_seed": 0}
    with Checkpointer(str(tmp_path), keep=2) as ck:
        ck.save(3, state, meta)
        ck.wait()
        assert ck.latest_step() == 3
        restored, got_meta = ck.restore(3, abstract_train_state(CFG, OPT), state_shardings(CFG, OPT, fsdp8))
        _assert_bitwise(restored, want)
        assert got_meta == dict(meta, step=3)
        q = restored["params"]["layers"]["attn"]["q"]["kernel"]
        assert q.sharding.spec == state["params"]["layers"]["attn"]["q"]["kernel"].sharding.spec
    # A new process on a different mesh: read straight into dp2,fsdp2,mp2 shards.
    other = build_mesh("dp2,fsdp2,mp2", CFG)
    with Checkpointer(str(tmp_path / "checkpoints")) as ck:  # the checkpoints folder itself is accepted too
        restored, _ = ck.restore(None, sharded_abstract_state(CFG, OPT, other))
    _assert_bitwise(restored, want)
    q = restored["params"]["layers"]["attn"]["q"]["kernel"]
    assert q.sharding.mesh.shape == other.shape
    assert q.addressable_shards[0].data.shape == (CFG.num_layers, CFG.hidden_size // 2, CFG.num_heads * 16 // 2)


def test_keep_last_k(tmp_path, fsdp8):
    with Checkpointer(str(tmp_path), keep=2) as ck:
        for step in (1, 2, 3, 4):
            ck.save(step, _state(fsdp8, step=step), {"i": step})
        ck.wait()
        assert ck.all_steps() == [3, 4]
        assert sorted(os.listdir(ck.directory)) == ["3", "4"]
        assert ck.save(4, _state(fsdp8, step=4)) is False  # a complete step is never overwritten


def test_async_save_then_donate(tmp_path, fsdp8):
    """The loop's pattern: save, then immediately run a step that donates (deletes) the saved arrays."""
    state = _state(fsdp8, step=5)
    want = jax.device_get(state)
    bump = jax.jit(lambda s: jax.tree.map(lambda x: x + 1, s), donate_argnums=0)
    with Checkpointer(str(tmp_path), keep=3, async_save=True) as ck:
        ck.save(5, state, {})
        state = bump(state)
        ck.wait()
        restored, _ = ck.restore(5, sharded_abstract_state(CFG, OPT, fsdp8))
    _assert_bitwise(restored, want)


def test_half_written_checkpoints_are_never_loaded(tmp_path, fsdp8):
    state = _state(fsdp8, step=2)
    with Checkpointer(str(tmp_path)) as ck:
        ck.save(2, state, {"ok": True})
    ckdir = tmp_path / "checkpoints"
    # 1) what a process killed mid-save leaves: Orbax's temporary folder with part of the arrays
    tmp = ckdir / "9.orbax-checkpoint-tmp-1795600000"
    (tmp / "state").mkdir(parents=True)
    (tmp / "state" / "manifest.ocdbt").write_bytes(b"\0" * 10)
    # 2) a folder under a final step name that lacks Orbax's finalisation files (e.g. an interrupted copy)
    partial = ckdir / "7"
    (partial / "state").mkdir(parents=True)
    (partial / "meta").mkdir()
    with Checkpointer(str(tmp_path)) as ck:
        assert ck.latest_step() == 2
        assert ck.all_steps() == [2]
        with pytest.raises(FileNotFoundError, match="incomplete"):
            ck.restore(7, sharded_abstract_state(CFG, OPT, fsdp8))
        restored, meta = ck.restore(None, sharded_abstract_state(CFG, OPT, fsdp8))
        assert meta["ok"] is True and int(restored["step"]) == 2
        # Saving step 7 for real replaces the unfinished folder.
        ck.save(7, _state(fsdp8, step=7), {})
        ck.wait()
        assert ck.latest_step() == 7
    assert not tmp.exists()  # Orbax deletes temporary folders of dead processes (in the background) on open


def test_errors_are_clear(tmp_path, fsdp8):
    with Checkpointer(str(tmp_path)) as ck:
        with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
            ck.restore(None, sharded_abstract_state(CFG, OPT, fsdp8))
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            ck.save(1, _state(fsdp8, step=1), {"bad": object()})
        ck.save(1, _state(fsdp8, step=1), {})
        ck.wait()
        with pytest.raises(ValueError, match="needs a sharding"):
            ck.restore(1, abstract_train_state(CFG, OPT))
        other = get_preset("tiny-mha", dtype="float32")  # different kv heads: k/v kernels have other shapes
        with pytest.raises(ValueError, match=r"does not match.*attn.k.kernel: saved \(2, 64, 32\), expected \(2, 64, 64\)"):
            ck.restore(1, sharded_abstract_state(other, OPT, fsdp8))


def test_params_io_reads_params_out_of_a_training_checkpoint(tmp_path, fsdp8):
    """The cross-team contract: load_params(<output_dir>) / load_params(<output_dir>/checkpoints/<step>)."""
    from camel_jax.params_io import load_params

    state = _state(fsdp8, step=4)
    want = jax.device_get(state["params"])
    with Checkpointer(str(tmp_path)) as ck:
        path = ck.write_model_config(CFG)
        ck.save(4, state, {})
    assert path == str(tmp_path / "model_config.json")
    assert json.loads((tmp_path / "model_config.json").read_text())["num_kv_heads"] == 2
    for where in (tmp_path, tmp_path / "checkpoints" / "4"):
        params, cfg = load_params(str(where))
        assert cfg == CFG
        _assert_bitwise(params, want)


def test_resume_continues_bitwise(tmp_path, fsdp8):
    """Two steps straight == one step, save, restore into a fresh state, one more step (bitwise, fp32 on CPU)."""
    from camel_jax.train.step import make_train_step

    step_fn = make_train_step(CFG, OPT, fsdp8, grad_accum=2)
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, CFG.vocab_size, (2, 8, 8)).astype(np.int32),
             "targets": rng.integers(0, CFG.vocab_size, (2, 8, 8)).astype(np.int32),
             "loss_mask": (rng.random((2, 8, 8)) < 0.6).astype(np.float32)}
    straight = _state(fsdp8)
    for _ in range(2):
        straight, _ = step_fn(straight, batch)
    resumed, _ = step_fn(_state(fsdp8), batch)
    with Checkpointer(str(tmp_path)) as ck:
        ck.save(1, resumed, {})
    del resumed
    with Checkpointer(str(tmp_path)) as ck:
        resumed, _ = ck.restore(ck.latest_step(), sharded_abstract_state(CFG, OPT, fsdp8))
    resumed, _ = step_fn(resumed, batch)
    _assert_bitwise(resumed, straight)
    assert int(resumed["step"]) == 2
