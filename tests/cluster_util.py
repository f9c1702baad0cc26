"""Shared by the tests that start several local processes (jax.distributed over gloo on 127.0.0.1)."""
import socket
import subprocess


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now, for a jax.distributed coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def communicate_all(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Each process's combined output; every process is killed afterwards, even when one times out."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            p.kill()
    return outs
