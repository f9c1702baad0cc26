"""params_io: Orbax round trips, direct sharded restore, and params out of a training checkpoint."""
import json
import os

import jax
import numpy as np
import pytest

from camel_jax import params_io
from camel_jax.model.mesh import build_mesh
from camel_jax.model.llama import init_params, param_shardings
from camel_jax.model.config import get_preset

CFG = get_preset("tiny-gqa", dtype="float32")


def numpy_params(seed=0):
    return jax.tree_util.tree_map(np.asarray, init_params(CFG, jax.random.PRNGKey(seed)))


def assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_with_config_and_tokenizer(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.model").write_bytes(b"spm")
    params = numpy_params()
    params_io.save_params(str(tmp_path / "ckpt"), params, CFG, tokenizer_dir=str(tok))
    loaded, cfg = params_io.load_params(str(tmp_path / "ckpt"))
    assert cfg == CFG
    assert all(isinstance(x, np.ndarray) for x in jax.tree_util.tree_leaves(loaded))
    assert_trees_equal(params, loaded)
    assert (tmp_path / "ckpt" / "tokenizer" / "tokenizer.model").read_bytes() == b"spm"
    assert params_io.tokenizer_dir(str(tmp_path / "ckpt")) == str(tmp_path / "ckpt" / "tokenizer")
    assert params_io.require_tokenizer_dir(str(tmp_path / "ckpt")) == str(tmp_path / "ckpt" / "tokenizer")
    with pytest.raises(FileExistsError, match="already exists"):
        params_io.save_params(str(tmp_path / "ckpt"), params, CFG)
    params_io.save_params(str(tmp_path / "bare"), params, CFG)
    assert params_io.tokenizer_dir(str(tmp_path / "bare")) is None
    with pytest.raises(FileNotFoundError, match="bare/tokenizer: missing"):
        params_io.require_tokenizer_dir(str(tmp_path / "bare"))


def test_sharded_restore_puts_each_leaf_in_its_shards(tmp_path):
    params = numpy_params()
    params_io.save_params(str(tmp_path / "ckpt"), params, CFG)
    mesh = build_mesh("dp2,fsdp2,mp2")
    shardings = param_shardings(CFG, mesh)
    loaded, _ = params_io.load_params(str(tmp_path / "ckpt"), shardings=shardings)
    assert_trees_equal(params, jax.tree_util.tree_map(np.asarray, loaded))
    q = loaded["layers"]["attn"]["q"]["kernel"]  # [L, D, H*hd] with spec (None, fsdp, mp)
    assert q.sharding.spec == shardings["layers"]["attn"]["q"]["kernel"].spec == jax.sharding.PartitionSpec(
        None, "fsdp", "mp")
    assert {s.data.shape for s in q.addressable_shards} == {(2, 32, 32)}


def test_device_arrays_save_too(tmp_path):
    params = init_params(CFG, jax.random.PRNGKey(1))
    params_io.save_params(str(tmp_path / "ckpt"), params, CFG)
    assert_trees_equal(jax.tree_util.tree_map(np.asarray, params), params_io.load_params(str(tmp_path / "ckpt"))[0])


def test_dtype_cast_on_restore(tmp_path):
    params_io.save_params(str(tmp_path / "ckpt"), numpy_params(), CFG)
    loaded, _ = params_io.load_params(str(tmp_path / "ckpt"), dtype="bfloat16")
    assert {str(x.dtype) for x in jax.tree_util.tree_leaves(loaded)} == {"bfloat16"}


def write_training_run(out, steps, save_args="PyTreeSave"):
    """A training output folder laid out as the training checkpoint contract says."""
    import optax
    import orbax.checkpoint as ocp

    os.makedirs(out)
    with open(os.path.join(out, "model_config.json"), "w") as f:
        json.dump(params_io.config_to_dict(CFG), f)
    saved = {}
    with ocp.CheckpointManager(os.path.join(out, "checkpoints"), item_names=("state", "meta")) as mgr:
        for step in steps:
            params = init_params(CFG, jax.random.PRNGKey(step))
            state = {"step": np.int32(step), "params": params, "opt_state": optax.adamw(1e-3).init(params),
                     "rng": jax.random.PRNGKey(0)}
            mgr.save(step, args=ocp.args.Composite(state=getattr(ocp.args, save_args)(state),
                                                   meta=ocp.args.JsonSave({"data_position": step})))
            saved[step] = jax.tree_util.tree_map(np.asarray, params)
        mgr.wait_until_finished()
    return saved


@pytest.mark.parametrize("save_args", ["PyTreeSave", "StandardSave"])
def test_params_out_of_training_checkpoints(tmp_path, save_args):
    out = str(tmp_path / "run")
    saved = write_training_run(out, [1, 2], save_args)
    tmp = os.path.join(out, "checkpoints", "3.orbax-checkpoint-tmp-1234")  # a save cut short: never finalized
    os.makedirs(os.path.join(tmp, "state"))
    with pytest.raises(FileNotFoundError, match="3.orbax-checkpoint-tmp-1234 is an incomplete training checkpoint"):
        params_io.load_params(tmp)
    newest, cfg = params_io.load_params(out)
    assert cfg == CFG
    assert_trees_equal(saved[2], newest)
    first, _ = params_io.load_params(os.path.join(out, "checkpoints", "1"))
    assert_trees_equal(saved[1], first)
    assert params_io.checkpoint_root(os.path.join(out, "checkpoints", "1")) == out
    # A final name holding no arrays (Orbax counts it as finalized, e.g. an interrupted copy): the error names it.
    os.makedirs(os.path.join(out, "checkpoints", "4", "state"))
    with pytest.raises(FileNotFoundError, match=r"checkpoints/4/state: not a complete Orbax checkpoint"):
        params_io.load_params(out)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is not a camel_jax checkpoint"):
        params_io.load_params(str(tmp_path))
    params_io.save_params(str(tmp_path / "ckpt"), numpy_params(), CFG)
    with open(tmp_path / "ckpt" / "model_config.json", "w") as f:
        json.dump({**params_io.config_to_dict(CFG), "hidden_size": 96}, f)
    with pytest.raises(ValueError, match=r"ckpt/params: parameter .*has shape \(256, 64\), the model config implies"):
        params_io.load_params(str(tmp_path / "ckpt"))
    with open(tmp_path / "ckpt" / "model_config.json", "w") as f:
        json.dump({**params_io.config_to_dict(CFG), "n_embd": 96}, f)
    with pytest.raises(ValueError, match=r"model_config.json: unknown LlamaConfig fields \['n_embd'\]"):
        params_io.load_model_config(str(tmp_path / "ckpt"))


WORKER = """
import sys
import jax
import numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from jax.experimental import multihost_utils
from camel_jax import params_io
from camel_jax.model.llama import param_shardings
from camel_jax.model.mesh import build_mesh
ckpt, out = sys.argv[3], sys.argv[4]
if jax.process_index() == 0:  # one process alone reads host-local numpy and writes an HF export
    params, cfg = params_io.load_params(ckpt)
    from camel_jax.convert.hf import export_hf
    export_hf(ckpt, out)
    print("LOCAL", float(sum(np.sum(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(params))), flush=True)
multihost_utils.sync_global_devices("after-local")
mesh = build_mesh("fsdp4")  # every process restores its own shards of the global arrays
params, _ = params_io.load_params(ckpt, shardings=param_shardings(params_io.load_model_config(ckpt), mesh))
emb = params["embed"]["embedding"]
print("SHARDED", emb.shape, len(emb.addressable_shards), float(emb.addressable_shards[0].data.sum()), flush=True)
"""


@pytest.mark.multiprocess
def test_one_process_of_a_cluster_can_load_alone(tmp_path):
    """Host-local loads/exports must not wait on Orbax barriers the other processes never reach."""
    from cluster_util import communicate_all, free_port, report
    import subprocess
    import sys

    params = numpy_params()
    params_io.save_params(str(tmp_path / "ckpt"), params, CFG)
    (tmp_path / "worker.py").write_text(WORKER)
    port = free_port()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), f"127.0.0.1:{port}", str(i),
                               str(tmp_path / "ckpt"), str(tmp_path / "hf")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = communicate_all(procs, timeout=240)
    lines = [line.split(" ", 1) for out, _ in outs for line in out.splitlines()
             if line.startswith(("LOCAL", "SHARDED"))]
    assert sorted(k for k, _ in lines) == ["LOCAL", "SHARDED", "SHARDED"], report(outs)
    want = float(sum(np.sum(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(params)))
    assert abs(float(dict(lines)["LOCAL"]) - want) < 1e-6 * max(1.0, abs(want))
    emb = params["embed"]["embedding"]  # spec (mp, fsdp): columns split in 4, two shards per process
    shard_sums = sorted(float(v.rsplit(" ", 1)[1]) for k, v in lines if k == "SHARDED")
    assert np.allclose(shard_sums, sorted([emb[:, :16].sum(), emb[:, 32:48].sum()]), rtol=1e-5)
    assert (tmp_path / "hf" / "model.safetensors").is_file()
