"""Multi-process start-up (`jax.distributed.initialize`) and the per-process part of the global batch.

On TPU pods (and SLURM/Open MPI clusters) JAX finds the coordinator itself, so the run only has to ask; GPU clusters
without a scheduler JAX knows pass `--coordinator_address host:port --num_processes N --process_id i` on every host.
On CPU (tests: several local processes on 127.0.0.1) cross-process collectives need gloo, which is switched on here.
This must run before anything touches a JAX backend (jax.devices(), a jit, an array).
"""
from __future__ import annotations

import os

import jax
import numpy as np


class DistributedError(ValueError):
    pass


def _auto_cluster() -> str | None:
    """Name of a multi-process environment JAX's auto-detection covers, or None for a single process."""
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if "," in hosts or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "TPU pod"
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return "SLURM"
    if int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "Open MPI"
    return None


def _on_cpu() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "") or (jax.config.jax_platforms or "")
    return platforms.split(",")[0].strip() == "cpu"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_ids: list[int] | None = None) -> str:
    """Join the cluster; returns how ('single process', 'explicit', or the auto-detected environment).

    Explicit flags must come together. With none given, a detected pod/cluster is joined automatically."""
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
    jax.distributed.initialize()
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
