"""Orbax train checkpoints: bitwise round trip, restore onto another mesh and another process count (1 × 8 devices
and 2 × 4, both ways, each host writing its own shards), keep-last-K, async save with the state donated right after,
half-written checkpoints never loaded, model_config.json."""
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


# 2 processes × 4 devices: restore what one process of 8 devices saved (onto another mesh, spanning both processes),
# then save a state of their own for that process to read back.
CLUSTER_WORKER = """
import hashlib, sys
import jax
from jax.experimental import multihost_utils
from camel_jax.train import distributed as D
D.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
sys.path.insert(0, sys.argv[5])
import test_checkpointing as T
from camel_jax.model.mesh import build_mesh
from camel_jax.train.checkpointing import Checkpointer
from camel_jax.train.state import sharded_abstract_state
def digest(tree):
    full = multihost_utils.process_allgather(tree, tiled=True)
    return ",".join(hashlib.sha256(x.tobytes()).hexdigest()[:16] for x in T._host(full))
with Checkpointer(sys.argv[3]) as ck:
    got, meta = ck.restore(None, sharded_abstract_state(T.CFG, T.OPT, build_mesh("dp2,fsdp2,mp2", T.CFG)))
print("RESTORED", meta["by"], digest(got), flush=True)
state = T._seeded_state(build_mesh("fsdp8", T.CFG), 1)
with Checkpointer(sys.argv[4]) as ck:
    ck.save(int(state["step"]), state, {"by": "2x4"})
print("SAVED", digest(state), flush=True)
D.barrier("done")
"""


def _seeded_state(mesh, seed):
    """A state with moments set (`_make_state`) and its params drawn from `seed`, at step 6 + seed."""
    state = _make_state(mesh)
    noise = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(seed), p.shape, p.dtype), state["params"])
    state["params"] = jax.jit(lambda x: x, out_shardings=jax.tree.map(lambda p: p.sharding, state["params"]))(noise)
    state["step"] = jax.device_put(np.int32(6 + seed), state["step"].sharding)
    return state


def _digest(tree):
    import hashlib

    return ",".join(hashlib.sha256(x.tobytes()).hexdigest()[:16] for x in _host(tree))


@pytest.mark.multiprocess
def test_restore_across_process_counts_is_bitwise(tmp_path, fsdp8):
    """1 process × 8 devices saves, 2 × 4 restore it onto dp2,fsdp2,mp2 (each dp shard in both processes); 2 × 4
    save (each process writing its own shards: Orbax's ocdbt.process_<i>), 1 × 8 restores onto dp2,fsdp2,mp2: both
    ways bitwise equal to what was saved."""
    import subprocess
    import sys

    from cluster_util import communicate_all, free_port, report

    mine = _seeded_state(fsdp8, 0)
    with Checkpointer(str(tmp_path / "one")) as ck:
        ck.save(6, mine, {"by": "1x8"})
    (tmp_path / "worker.py").write_text(CLUSTER_WORKER)
    tests, repo = os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), f"127.0.0.1:{port}", str(i),
                               str(tmp_path / "one"), str(tmp_path / "two"), tests], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = communicate_all(procs, timeout=300)
    assert all(p.returncode == 0 for p in procs), report(outs)
    # only the worker's own tagged lines: a library may print a blank or untagged line to stdout (CI saw one)
    lines = [x for x in (line.split() for out, _ in outs for line in out.splitlines()) if x and x[0] in ("RESTORED", "SAVED")]
    assert [x[1:] for x in lines if x[0] == "RESTORED"] == [["1x8", _digest(mine)]] * 2, report(outs)
    saved = [x[1] for x in lines if x[0] == "SAVED"]
    assert len(saved) == 2 and saved[0] == saved[1], report(outs)
    step_dir = tmp_path / "two" / "checkpoints" / "7" / "state"
    for i in (0, 1):  # each host wrote its shards itself, in parallel, into its own ocdbt database
        assert any((step_dir / f"ocdbt.process_{i}" / "d").iterdir()), sorted(os.listdir(step_dir))
    other = build_mesh("dp2,fsdp2,mp2", CFG)
    with Checkpointer(str(tmp_path / "two")) as ck:
        got, meta = ck.restore(None, sharded_abstract_state(CFG, OPT, other))
    assert meta["by"] == "2x4" and int(got["step"]) == 7
    assert _digest(got) == saved[0]
