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

`StoredJit` goes one step further for the engine's programs: JAX looks its persistent cache up only after tracing
and lowering a call (~1 s per program for SmolLM2's 30 layers on CPU: 28 s of a warm GSM+BBH evaluation, profiled),
so it keeps each compiled executable itself (jax.experimental.serialize_executable), keyed *before* tracing by what
the program is made of: the function's name and static identity (the model config), its arguments' tree, shapes,
dtypes and shardings, the ambient mesh, the static keywords, jax/jaxlib/flax versions, this host's key, XLA_FLAGS,
the tracing-relevant jax flags, and a hash of camel_jax's own source (any edit to the package invalidates every
entry: a program's code is not otherwise visible before tracing it). A stored executable is loaded with pickle, as
JAX's own cache loads executables: the folder is trusted as the user's own. One process only (jax.distributed
programs are left to jit).
"""
from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import pickle
import platform
import tempfile
import threading
import unittest.mock
from typing import Any, Callable

import jax
import numpy as np

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
        _store(configured)
        return configured
    where = where or os.environ.get("CAMEL_JAX_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "camel_jax", "xla")
    if where == "none":
        _store(None)
        return None
    folder = os.path.join(where, host_key())
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--compile_cache {where}: cannot create {folder}: {e.strerror}") from None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    _store(folder)
    return folder


_FRESH = threading.Lock()  # one patched compile at a time (another thread's compile meanwhile skips JAX's cache)
_PROGRAMS: list[str | None] = [None]  # the folder StoredJit keeps executables in (set by enable)


def _store(folder: str | None) -> None:
    _PROGRAMS[0] = None if folder is None else os.path.join(folder, "camel_jax_programs")


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """What every stored program depends on beyond its arguments and flags: versions, host, camel_jax's source."""
    import jaxlib

    h = hashlib.sha256()
    try:
        import flax
        flax_version = flax.__version__
    except ImportError:
        flax_version = ""
    h.update(repr((jax.__version__, jaxlib.__version__, flax_version, host_key(),
                   os.environ.get("XLA_FLAGS", ""))).encode())
    package = pathlib.Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _flags() -> tuple:
    """The jax flags that change what a function traces to (read per call: a process may change them)."""
    c = jax.config
    return (c.jax_enable_x64, c.jax_default_matmul_precision, c.jax_default_prng_impl, c.jax_threefry_partitionable,
            jax.sharding.get_abstract_mesh())


def _sharding(x: Any) -> Any:
    s = getattr(x, "sharding", None)
    if s is None:
        return None
    mesh = getattr(s, "mesh", None)
    ids = (tuple(np.asarray(mesh.device_ids).ravel().tolist()) if getattr(mesh, "device_ids", None) is not None
           else tuple(sorted(d.id for d in s.device_set)))
    return repr(s), ids


def _signature(x: Any) -> tuple:
    if isinstance(x, jax.Array):
        return x.shape, x.dtype, x.weak_type, x.sharding
    return np.shape(x), np.asarray(x).dtype, isinstance(x, (int, float, complex)) and not isinstance(x, bool), None


class StoredJit:
    """`jax.jit(fn, **jit_kw)` called through compiled executables kept in memory and, once `enable` has set a
    folder, on disk under a key computed before tracing (module docstring). `ident` names what the traced function
    closes over that its arguments do not show (e.g. repr of the model config); `name` must be unique per fn."""

    def __init__(self, fn: Callable, name: str, ident: str = "", **jit_kw):
        self._jit, self.name, self.ident = jax.jit(fn, **jit_kw), name, ident
        self._compiled: dict[tuple, Any] = {}
        self.loaded = self.stored = 0  # executables read from disk / written to it (tests, profiling)

    def __call__(self, *args, **static):
        leaves, tree = jax.tree.flatten(args)
        sig = (tree, tuple(map(_signature, leaves)), tuple(sorted(static.items())), _flags())
        exe = self._compiled.get(sig)
        if exe is None:
            exe = self._compiled[sig] = self._load_or_compile(args, static, leaves, tree)
        return exe(*args)

    def _cache_size(self) -> int:
        return len(self._compiled)

    def _key(self, static: dict, leaves: list, tree: Any) -> str:
        parts = (self.name, self.ident, str(tree), [(np.shape(x), str(_signature(x)[1]), _signature(x)[2],
                                                      _sharding(x)) for x in leaves],
                 sorted((k, repr(v)) for k, v in static.items()), repr(_flags()), fingerprint())
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def _load_or_compile(self, args: tuple, static: dict, leaves: list, tree: Any) -> Any:
        folder = _PROGRAMS[0] if jax.process_count() == 1 else None
        if folder is None:
            return self._jit.lower(*args, **static).compile()
        path = os.path.join(folder, f"{self.name}-{self._key(static, leaves, tree)}.exe")
        exe = _load(path)
        if exe is not None:
            self.loaded += 1
            return exe
        # Compiled afresh, past JAX's own cache: an XLA:CPU executable that cache loaded serializes without its
        # functions (jax 0.10.2: the reloaded copy fails "Function ..._fusion not found"; tests/
        # test_compile_cache.py), and jax reads its "cache used" decision once per process, so the switch is its
        # private check, patched for this compile; without that check (another jax) nothing is stored.
        from jax._src import compilation_cache as jax_cache

        if not callable(getattr(jax_cache, "is_cache_used", None)):
            return self._jit.lower(*args, **static).compile()
        with _FRESH, unittest.mock.patch.object(jax_cache, "is_cache_used", lambda backend: False):
            exe = self._jit.lower(*args, **static).compile()
        self.stored += _save(path, exe)
        return exe


def _load(path: str) -> Any:
    """The executable stored at `path`, or None (absent, damaged or incompatible: then compiled anew)."""
    from jax.experimental import serialize_executable as se

    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree, ids = pickle.load(f)
        by_id = {d.id: d for d in jax.devices()}
        return se.deserialize_and_load(payload, in_tree, out_tree, execution_devices=[by_id[i] for i in ids])
    except Exception:  # noqa: BLE001
        return None


def _save(path: str, exe: Any) -> bool:
    """Store `exe` at `path` atomically (a concurrent reader sees all of an entry or none); False when this
    executable cannot be serialized (a backend, closed-over constants): its in-memory copy serves."""
    from jax.experimental import serialize_executable as se

    tmp = None
    try:
        ids = [d.id for d in exe.runtime_executable().local_devices()]  # its devices, in order
        payload = pickle.dumps((*se.serialize(exe), ids))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
        return True
    except Exception:  # noqa: BLE001
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        return False
