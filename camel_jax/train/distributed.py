"""Multi-process start-up: `jax.distributed.initialize` and the per-process view of the global batch.

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


def local_rows(global_rows: int) -> tuple[int, int]:
    """(start, count) of this process's rows of a global batch split evenly over the processes, in process order."""
    n, i = jax.process_count(), jax.process_index()
    if global_rows % n:
        raise DistributedError(f"{global_rows} rows do not split over {n} processes")
    per = global_rows // n
    return i * per, per


def global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """Assemble the global batch from every process's local rows (axis 1 of [grad_accum, rows, T] arrays).

    A process holds only the rows its own devices need, so no host ever materialises the global batch."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
