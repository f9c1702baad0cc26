"""JAX's persistent compilation cache for commands that compile the same engine programs run after run.

Why: an evaluation compiles the engine's programs (a prefill and an insert per prompt bucket, a decode step per
attended window) anew in every process: ~30 s of XLA for SmolLM2's GSM and BBH on CPU, the same programs for every
checkpoint of an architecture, where the paper's study evaluated dozens. JAX can keep compiled executables on
disk; this turns that on, in a folder of its own per host CPU and process layout, because JAX's key covers the
program, the jax/jaxlib versions, the devices and the compile flags but not the host's instruction set (an
executable built for one CPU could be loaded on another sharing the folder, e.g. a home on NFS) and not the process
layout (a multi-process program and a one-process one on the same devices shared a key in our tests, and the
one-process run that loaded the other's executable aborted in its all-reduce: tests/conftest.py).

Where: `where` (a folder), else $CAMEL_JAX_COMPILE_CACHE, else ~/.cache/camel_jax/xla; "none" turns it off. A cache
the user configured for JAX itself ($JAX_COMPILATION_CACHE_DIR or jax.config) is left as it is and used.
"""
from __future__ import annotations

import hashlib
import os
import platform

import jax

MIN_COMPILE_SECS = 0.5  # cache programs that took at least this long to compile (JAX's default: 1 s)


def host_key() -> str:
    """A short key of what an executable depends on beyond JAX's own key: backend, process count, CPU features."""
    flags = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), flags)
    except OSError:
        pass
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    return f"{jax.default_backend()}-p{jax.process_count()}-{platform.machine()}-{digest}"


def enable(where: str | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on (see the module docstring); returns the folder used, or None."""
    configured = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if configured:
        return configured
    where = where or os.environ.get("CAMEL_JAX_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "camel_jax", "xla")
    if where == "none":
        return None
    folder = os.path.join(where, host_key())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--compile_cache {where}: cannot create {folder}: {e.strerror}") from None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return folder
