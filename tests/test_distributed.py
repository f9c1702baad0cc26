"""jax.distributed start-up: flag checks, row split, and a real 2-process CPU cluster (gloo) on 127.0.0.1."""
import os
import subprocess
import sys
import textwrap

import pytest

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
    assert D.local_rows(16) == (0, 16) and D.is_main()


def test_auto_detection_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1v-0,t1v-1")
    assert D._auto_cluster() == "TPU pod"
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert D._auto_cluster() == "SLURM"


WORKER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    from camel_jax.train import distributed as D
    how = D.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from camel_jax.model.mesh import build_mesh
    mesh = build_mesh("fsdp-1")
    start, n = D.local_rows(8)
    rows = np.arange(start, start + n, dtype=np.int32)[None, :, None] * np.ones((2, 1, 3), np.int32)
    batch = D.global_batch({"x": rows}, NamedSharding(mesh, P(None, ("dp", "fsdp"), None)))
    total = jax.jit(lambda b: jnp.sum(b["x"]), out_shardings=NamedSharding(mesh, P()))(batch)
    D.barrier("done")
    print("RESULT", how, jax.process_count(), jax.device_count(), batch["x"].shape, int(total), D.is_main(), flush=True)
""")


@pytest.mark.multiprocess
def test_two_local_processes_form_one_cluster(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, str(script), f"127.0.0.1:{port}", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = communicate_all(procs, timeout=240)
    results = [line.split()[1:] for out, _ in outs for line in out.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2, report(outs)
    # rows 0..7, each repeated over 2 accumulation slices × 3 tokens: 6 × 28
    for r in results:
        assert r[:6] == ["explicit", "2", "4", "(2,", "8,", "3)"] and r[6] == str(6 * 28), r
    assert sorted(r[7] for r in results) == ["False", "True"]
