"""Shared by the tests that start several local processes (jax.distributed over gloo on 127.0.0.1)."""
import concurrent.futures
import socket
import subprocess


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now, for a jax.distributed coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def communicate_all(procs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr); every process is killed afterwards, even when one times out.

    Start the processes with stdout=PIPE and stderr=PIPE, apart: gloo's C++ logging writes to stderr in pieces,
    and merged into stdout it once split a worker's RESULT line in two (a flaky failure)."""
    try:  # all drained at once: a process blocked on a full pipe must not stall one waiting for it at a barrier
        with concurrent.futures.ThreadPoolExecutor(len(procs)) as pool:
            done = list(pool.map(lambda p: p.communicate(timeout=timeout), procs))
    finally:
        for p in procs:
            p.kill()
    return [(out or "", err or "") for out, err in done]


def report(outs: list[tuple[str, str]], tail: int = 3000) -> str:
    """Both streams of every process, for an assertion message."""
    return "\n=====\n".join(f"{out[-tail:]}\n--- stderr ---\n{err[-tail:]}" for out, err in outs)
