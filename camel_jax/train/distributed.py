"""Multi-process start-up (`jax.distributed.initialize`) and the per-process part of the global batch.

On TPU pods (and SLURM/Open MPI clusters) JAX finds the coordinator itself, so the run only has to ask — on every
TPU VM (a host with TPU chips), since its environment need not name the other workers (JAX asks the metadata server,
and a one-host slice is a one-process cluster); GPU clusters
without a scheduler JAX knows pass `--coordinator_address host:port --num_processes N --process_id i` on every host,
or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (flags win), which suits launchers that set
per-process environments. Under SLURM, JAX reads the coordinator (the step's first node), the task count and the
task id from srun's variables; a job that claims several tasks but lacks what JAX needs (a process started outside
srun) is refused here with the variables named, instead of JAX's error deep in start-up.
On CPU (tests: several local processes on 127.0.0.1) cross-process collectives need gloo, which is switched on here.
This must run before anything touches a JAX backend (jax.devices(), a jit, an array).
"""
from __future__ import annotations

import os

import jax
import numpy as np

import camel_jax


class DistributedError(ValueError):
    pass


# What jax's SlurmCluster reads (jax/_src/clusters/slurm_cluster.py); it detects SLURM only when all are set.
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
ENV_FLAGS = (("JAX_COORDINATOR_ADDRESS", "coordinator_address"), ("JAX_NUM_PROCESSES", "num_processes"),
             ("JAX_PROCESS_ID", "process_id"))


def _env_int(var: str, default: int | None = None) -> int | None:
    value = os.environ.get(var, "")
    if not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"${var}={value!r}: expected an integer") from None


def _auto_cluster() -> str | None:
    """Name of a multi-process environment JAX's auto-detection covers, or None for a single process."""
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if "," in hosts or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "TPU pod"
    if camel_jax.tpu_chips() > 0:  # a Cloud TPU VM: JAX reads the slice's workers from the metadata server
        return "TPU VM"
    if _env_int("SLURM_NTASKS", 1) > 1:
        missing = [v for v in SLURM_VARS if v not in os.environ]
        if missing:
            raise DistributedError(f"SLURM_NTASKS={os.environ['SLURM_NTASKS']} but {', '.join(missing)} unset: start "
                                   "one process per task with srun (or pass --coordinator_address, --num_processes "
                                   "and --process_id)")
        return "SLURM"
    if _env_int("OMPI_COMM_WORLD_SIZE", 1) > 1:
        return "Open MPI"
    return None


def _from_env(coordinator_address, num_processes, process_id):
    """The explicit triple, each missing flag taken from its JAX_* variable when no flag is given at all."""
    if any(x is not None for x in (coordinator_address, num_processes, process_id)):
        return coordinator_address, num_processes, process_id
    if os.environ.get("JAX_NUM_PROCESSES", "").strip() or os.environ.get("JAX_PROCESS_ID", "").strip():
        got = {var: os.environ.get(var) for var, _ in ENV_FLAGS}
        if not all(v and v.strip() for v in got.values()):
            raise DistributedError("JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID must be set "
                                   f"together (got {', '.join(f'{k}={v!r}' for k, v in got.items())})")
        return got["JAX_COORDINATOR_ADDRESS"], _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
    return None, None, None


def _on_cpu() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "") or (jax.config.jax_platforms or "")
    return platforms.split(",")[0].strip() == "cpu"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: list[int] | None = None) -> str:
    """Join the cluster; returns how ('single process', 'explicit', or the auto-detected environment).

    Explicit flags (or their JAX_* variables) must come together. With none given, a detected pod/cluster is
    joined automatically."""
    coordinator_address, num_processes, process_id = _from_env(coordinator_address, num_processes, process_id)
    given = [x is not None for x in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise DistributedError("--coordinator_address, --num_processes and --process_id must be given together "
                               f"(got coordinator_address={coordinator_address!r}, num_processes={num_processes}, "
                               f"process_id={process_id})")
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise DistributedError(f"--process_id={process_id} must be in [0, --num_processes={num_processes})")
        if num_processes == 1:
            return "single process"
        if _on_cpu():
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, local_device_ids=local_device_ids)
        return "explicit"
    env = _auto_cluster()
    if env is None:
        return "single process"
    if _on_cpu():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(local_device_ids=local_device_ids)
    return env


def is_main() -> bool:
    """Process 0 writes logs, configs and exports; every process takes part in checkpoint saves."""
    return jax.process_index() == 0


def _micro_and_rows(index: tuple, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(shape[0])[index[0]], np.arange(shape[1])[index[1]]


def index_rows(index: tuple, shape: tuple) -> np.ndarray:
    """Global-batch rows that one device's index (slices into a [grad_accum, m, T] batch) covers, in its order.

    The loop's batch is the global [B, T] rows reshaped to [grad_accum, m = B/grad_accum, T]: micro-batch k holds rows
    k*m … (k+1)*m - 1, so a device holding rows [a, b) of every micro-batch needs rows k*m + [a, b) for each k."""
    ks, js = _micro_and_rows(index, shape)
    return (ks[:, None] * shape[1] + js[None, :]).reshape(-1)


def batch_rows(sharding: jax.sharding.Sharding, shape: tuple) -> np.ndarray:
    """Sorted global-batch rows this process's devices hold of a [grad_accum, m, T] batch under `sharding`.

    Read off the sharding itself, so it is right for every mesh and device order: whole shards per process, a shard
    spanning processes (mp wider than a host: every process then holds all rows), or non-contiguous shards."""
    idx = sharding.addressable_devices_indices_map(tuple(shape)).values()
    return np.unique(np.concatenate([index_rows(i, shape) for i in idx] or [np.zeros(0, np.int64)]))


def device_slice(v: np.ndarray, rows: np.ndarray, index: tuple, shape: tuple) -> np.ndarray:
    """A device's `index` into the global [grad_accum, m, T] = `shape` batch, cut from this process's rows: `v` is
    [len(rows), T], its row i being global-batch row `rows[i]`."""
    where = np.full(shape[0] * shape[1], -1, dtype=np.int64)
    where[np.asarray(rows, dtype=np.int64)] = np.arange(len(rows))
    want = index_rows(index, shape)
    at = where[want]
    if (at < 0).any():
        raise DistributedError(f"a device of process {jax.process_index()} needs global batch rows "
                               f"{want[at < 0][:8].tolist()}, which this process did not load")
    ks, js = _micro_and_rows(index, shape)
    return v[at].reshape(len(ks), len(js), *v.shape[1:])[(slice(None), slice(None), *index[2:])]


def global_batch(local: dict[str, np.ndarray], rows: np.ndarray, sharding: jax.sharding.Sharding,
                 shape: tuple) -> dict[str, jax.Array]:
    """The global [grad_accum, m, T] = `shape` batch from this process's rows: `local[k]` is [len(rows), T], its row i
    being global-batch row `rows[i]` (from `batch_rows`). Each device's slice is cut from these rows alone, so no host
    holds more of the global batch than its own devices do, and any mesh over any process layout gets the same batch.
    """
    shape, out = tuple(shape), {}
    for k, v in local.items():
        v = np.asarray(v)
        if v.shape != (len(rows), *shape[2:]):
            raise DistributedError(f"batch {k!r} is {v.shape}; expected {len(rows)} rows × {shape[2:]}")
        out[k] = jax.make_array_from_callback(shape, sharding, lambda index, v=v: device_slice(v, rows, index, shape))
    return out


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
