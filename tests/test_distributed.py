"""jax.distributed start-up: flag checks, which global-batch rows a process loads (read off the batch sharding, for
any mesh and device order), and a real 2-process CPU cluster (gloo) on 127.0.0.1 assembling the same global batch."""
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from camel_jax.train import distributed as D
from cluster_util import communicate_all, free_port, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flags_must_come_together():
    with pytest.raises(D.DistributedError, match="must be given together"):
        D.initialize(coordinator_address="127.0.0.1:1234")
    with pytest.raises(D.DistributedError, match="--process_id=2"):
        D.initialize("127.0.0.1:1234", num_processes=2, process_id=2)


def test_single_process_is_a_no_op(monkeypatch):
    for var in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert D.initialize() == "single process"
    assert D.initialize("127.0.0.1:1", num_processes=1, process_id=0) == "single process"
    assert D.is_main()


def test_auto_detection_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1v-0,t1v-1")
    assert D._auto_cluster() == "TPU pod"
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    monkeypatch.setattr(D.camel_jax, "tpu_chips", lambda: 4)  # a TPU VM whose environment names no other worker
    assert D._auto_cluster() == "TPU VM"
    monkeypatch.setattr(D.camel_jax, "tpu_chips", lambda: 0)
    for var, value in zip(D.SLURM_VARS, ("7", "node[001-004]", "4", "2", "0")):  # what srun sets in a 4-task step
        monkeypatch.setenv(var, value)
    assert D._auto_cluster() == "SLURM"


class _OneProcess:
    """A sharding seen from a pretend process that owns only `devices` (what addressable_devices_indices_map is)."""

    def __init__(self, sharding, devices):
        self.sharding, self.devices = sharding, set(devices)

    def addressable_devices_indices_map(self, shape):
        return {d: i for d, i in self.sharding.devices_indices_map(shape).items() if d in self.devices}


def _sharding(sizes, order):
    devs = np.asarray(jax.devices()[:8])[order].reshape(sizes)
    return NamedSharding(Mesh(devs, ("dp", "fsdp", "mp")), P(None, ("dp", "fsdp"), None))


def test_index_rows_follow_the_grad_accum_reshape():
    # [grad_accum 2, m 8, T]: a device holding micro rows 2..3 needs global rows 2, 3 and 10, 11
    assert D.index_rows((slice(None), slice(2, 4), slice(None)), (2, 8, 5)).tolist() == [2, 3, 10, 11]
    assert D.index_rows((slice(1, 2), slice(None), slice(None)), (2, 3, 5)).tolist() == [3, 4, 5]


IDENTITY, INTERLEAVED = list(range(8)), [0, 4, 1, 5, 2, 6, 3, 7]  # 2 pretend processes: devices 0-3 and 4-7


@pytest.mark.parametrize("sizes,order,rows0", [
    ((8, 1, 1), IDENTITY, [0, 1, 2, 3, 8, 9, 10, 11]),  # whole shards per process, as before
    ((1, 1, 8), IDENTITY, list(range(16))),  # mp spans both processes: each loads every row
    ((2, 1, 4), IDENTITY, [0, 1, 2, 3, 8, 9, 10, 11]),
    ((2, 2, 2), INTERLEAVED, list(range(16))),  # each dp×fsdp shard spans both processes
    ((4, 1, 2), INTERLEAVED, list(range(16))),
    ((8, 1, 1), INTERLEAVED, [0, 2, 4, 6, 8, 10, 12, 14]),  # non-contiguous shards
])
def test_rows_come_from_the_sharding_and_rebuild_every_device_slice(sizes, order, rows0):
    shape = (2, 8, 3)  # grad_accum 2 × 8 rows × 3 tokens
    full = np.arange(16 * 3, dtype=np.int32).reshape(16, 3)  # global batch rows
    sharding = _sharding(sizes, order)
    procs = [_OneProcess(sharding, jax.devices()[:4]), _OneProcess(sharding, jax.devices()[4:8])]
    got = [D.batch_rows(p, shape) for p in procs]
    assert got[0].tolist() == rows0
    assert set(np.concatenate(got).tolist()) == set(range(16))
    for p, rows in zip(procs, got):
        local = full[rows]  # what the data iterator gives this process
        for dev, index in p.addressable_devices_indices_map(shape).items():
            np.testing.assert_array_equal(D.device_slice(local, rows, index, shape), full.reshape(shape)[index])
    with pytest.raises(D.DistributedError, match="did not load"):
        index = next(iter(sharding.devices_indices_map(shape).values()))
        D.device_slice(full[8:9], np.array([8]), index, shape)


def test_global_batch_places_rows_given_in_any_order():
    shape = (2, 4, 3)
    full = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
    sharding = _sharding((2, 2, 2), INTERLEAVED)
    rows = np.array([5, 0, 7, 2, 1, 6, 3, 4])
    batch = D.global_batch({"x": full[rows]}, rows, sharding, shape)
    assert batch["x"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(batch["x"]), full.reshape(shape))
    with pytest.raises(D.DistributedError, match="expected 8 rows"):
        D.global_batch({"x": full[:4]}, rows, sharding, shape)


WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    from jax.experimental import multihost_utils
    from camel_jax.train import distributed as D
    how = D.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from camel_jax.model.mesh import build_mesh
    from camel_jax.train.step import batch_sharding
    devs = jax.devices()  # process 0 holds devs[:2], process 1 devs[2:]
    interleaved = [devs[i] for i in (0, 2, 1, 3)]
    shape = (2, 4, 3)  # grad_accum 2 × 4 rows × 3 tokens
    full = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)  # the global batch's rows
    print("INFO", how, jax.process_count(), jax.device_count(), D.is_main(), flush=True)
    for spec, order in [("fsdp-1", devs), ("mp4", devs), ("dp2,mp2", devs), ("dp2,mp2", interleaved),
                        ("dp4", interleaved)]:
        sharding = batch_sharding(build_mesh(spec, devices=order))
        rows = D.batch_rows(sharding, shape)
        batch = D.global_batch({"x": full[rows]}, rows, sharding, shape)
        same = np.array_equal(multihost_utils.process_allgather(batch["x"], tiled=True), full.reshape(shape))
        print("RESULT", spec, order is interleaved, ",".join(map(str, rows)), same, flush=True)
    D.barrier("done")
""")


@pytest.mark.multiprocess
def test_two_processes_assemble_the_same_global_batch_on_every_mesh(tmp_path):
    """2 processes × 2 devices: whole shards per process, mp across both, dp shards spanning both, strided shards."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, str(script), f"127.0.0.1:{port}", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = communicate_all(procs, timeout=240)
    assert all(p.returncode == 0 for p in procs), report(outs)
    info = [line.split()[1:] for out, _ in outs for line in out.splitlines() if line.startswith("INFO")]
    assert sorted(info) == [["explicit", "2", "4", "False"], ["explicit", "2", "4", "True"]], report(outs)
    results = [[line.split()[1:] for line in out.splitlines() if line.startswith("RESULT")] for out, _ in outs]
    every, half0, half1 = "0,1,2,3,4,5,6,7", "0,1,4,5", "2,3,6,7"  # global rows k*4 + j of micro-batch k
    assert results[0] == [["fsdp-1", "False", half0, "True"], ["mp4", "False", every, "True"],
                          ["dp2,mp2", "False", half0, "True"], ["dp2,mp2", "True", every, "True"],
                          ["dp4", "True", "0,2,4,6", "True"]], report(outs)
    assert results[1] == [["fsdp-1", "False", half1, "True"], ["mp4", "False", every, "True"],
                          ["dp2,mp2", "False", half1, "True"], ["dp2,mp2", "True", every, "True"],
                          ["dp4", "True", "1,3,5,7", "True"]], report(outs)


def test_jax_env_vars_stand_for_the_flags(monkeypatch):
    calls = []
    monkeypatch.setattr(D.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(D, "_on_cpu", lambda: False)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert D.initialize() == "explicit"
    assert calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3, local_device_ids=None)]
    assert D.initialize("10.0.0.2:1", 2, 1) == "explicit"  # flags win over the environment
    assert calls[-1]["coordinator_address"] == "10.0.0.2:1"
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    with pytest.raises(D.DistributedError, match="must be set together .*JAX_COORDINATOR_ADDRESS=None"):
        D.initialize()
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_PROCESS_ID", "three")
    with pytest.raises(D.DistributedError, match=r"\$JAX_PROCESS_ID='three': expected an integer"):
        D.initialize()


def test_slurm_without_srun_is_refused_naming_the_variables(monkeypatch):
    for var in D.SLURM_VARS + ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    with pytest.raises(D.DistributedError, match="SLURM_NTASKS=8 but SLURM_STEP_NODELIST, SLURM_PROCID, "
                                                 "SLURM_LOCALID unset: start one process per task with srun"):
        D.initialize()


SLURM_WORKER = textwrap.dedent("""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils
    from camel_jax.train import distributed as D
    how = D.initialize()  # no flags: everything from the (fake) srun environment, through JAX's SLURM detection
    ids = multihost_utils.process_allgather(np.array([jax.process_index()])).ravel()
    print("INFO", how, jax.process_count(), jax.process_index(), jax.device_count(), ",".join(map(str, ids)),
          flush=True)
    D.barrier("done")
""")


@pytest.mark.multiprocess
def test_two_processes_join_through_a_fake_slurm_step(tmp_path):
    """srun's variables as a 2-task step on this host would set them; JAX_COORDINATOR_PORT (JAX's own override of
    the port it derives from the job id) keeps the coordinator on a free port."""
    script = tmp_path / "worker.py"
    script.write_text(SLURM_WORKER)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_COORDINATOR", "JAX_NUM_PROC",
                                                                       "JAX_PROCESS_ID", "OMPI_"))}
    base.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
                SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2",
                JAX_COORDINATOR_PORT=str(free_port()))
    procs = [subprocess.Popen([sys.executable, str(script)], env=dict(base, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = communicate_all(procs, timeout=240)
    assert all(p.returncode == 0 for p in procs), report(outs)
    info = sorted(line.split()[1:] for out, _ in outs for line in out.splitlines() if line.startswith("INFO"))
    assert info == [["SLURM", "2", "0", "2", "0,1"], ["SLURM", "2", "1", "2", "0,1"]], report(outs)
