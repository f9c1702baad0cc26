"""Run paths on local disk or in a bucket (``gs://``): the one place the training run's files are opened.

A multi-host run cannot keep checkpoints on each host's disk, so `--output_dir` and `--init_from` may be ``gs://``
URLs. Checkpoints go through Orbax (etils' epath for directories, tensorstore for the arrays); every other run file
(metrics, summary, model config, tokenizer) goes through the functions here, which use epath too, so one
configuration reaches both.

Backend choice, and why: epath picks TensorFlow's ``tf.io.gfile`` for ``gs://`` whenever TensorFlow is importable
(seqio brings it), and TensorFlow's GCS client has its endpoint compiled in (``https://www.googleapis.com/storage/v1/``,
no override among its ``GCS_*`` variables), so it cannot be pointed at an emulator and the code a test runs would not
be the code a pod runs. Importing this module therefore makes epath use fsspec/gcsfs (``EPATH_USE_TF=false`` unless
the environment already says otherwise), which reads the standard credentials chain on a pod and honours
``STORAGE_EMULATOR_HOST``. When that variable names an emulator, tensorstore (Orbax's array I/O) is pointed at it
too (``TENSORSTORE_GCS_HTTP_URL``), so one variable moves every layer.

Objects in a bucket are written whole (no append, no rename: metrics.py keeps a bucket's log and rewrites it);
`write_text` is atomic on both kinds of path.
"""
from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("EPATH_USE_TF", "false")
if os.environ.get("STORAGE_EMULATOR_HOST"):
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", os.environ["STORAGE_EMULATOR_HOST"])

from etils import epath  # noqa: E402  (after the backend choice above, which epath reads per call)

SCHEMES = ("gs://",)  # what the run accepts besides local paths; epath's others (s3://, ...) are untested here


def is_remote(path: str) -> bool:
    return "://" in str(path)


def check(path: str, flag: str) -> None:
    """ValueError naming `flag` for a URL scheme the run does not speak."""
    p = str(path)
    if is_remote(p) and not p.startswith(SCHEMES):
        raise ValueError(f"{flag}={p}: only local paths and {', '.join(SCHEMES)} URLs are supported")


def resolve(path: str) -> str:
    """A local path made absolute, a URL kept as given (without a trailing slash)."""
    p = str(path)
    return p.rstrip("/") if is_remote(p) else os.path.abspath(p)


def join(path: str, *parts: str) -> str:
    return str(epath.Path(str(path)).joinpath(*parts)) if is_remote(path) else os.path.join(path, *parts)


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if is_remote(path) else os.path.basename(os.path.normpath(path))


def parent(path: str) -> str:
    return str(epath.Path(str(path)).parent) if is_remote(path) else os.path.dirname(path)


def exists(path: str) -> bool:
    return epath.Path(str(path)).exists()


def isdir(path: str) -> bool:
    return epath.Path(str(path)).is_dir()


def isfile(path: str) -> bool:
    p = epath.Path(str(path))
    return p.exists() and not p.is_dir()


def listdir(path: str) -> list[str]:
    return sorted(p.name for p in epath.Path(str(path)).iterdir())


def makedirs(path: str) -> None:
    epath.Path(str(path)).mkdir(parents=True, exist_ok=True)


def read_text(path: str) -> str:
    return epath.Path(str(path)).read_text()


def write_text(path: str, text: str) -> None:
    """Atomic: local files are written aside then renamed; an object upload only appears once complete."""
    if is_remote(path):
        epath.Path(str(path)).write_text(text)
        return
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def copy_dir(src: str, dst: str) -> None:
    """The files of folder `src` (or the single file `src`) into folder `dst`, which appears atomically on local
    disk; either side may be a bucket."""
    files = [(join(src, n), n) for n in listdir(src) if isfile(join(src, n))] if isdir(src) else [(src, basename(src))]
    target = dst if is_remote(dst) else dst + ".tmp"
    if not is_remote(dst):
        shutil.rmtree(target, ignore_errors=True)
    makedirs(target)
    for path, name in files:
        epath.Path(str(path)).copy(epath.Path(join(target, name)), overwrite=True)
    if not is_remote(dst):
        os.replace(target, dst)


def local_copy(path: str, prefix: str = "camel_jax_") -> str:
    """`path` itself when local; else a copy of the remote folder's files (or of the remote file) in a fresh local
    temporary folder, for readers that need a real file (sentencepiece). Returns the copy's path; the caller may
    delete its parent folder once loaded."""
    if not is_remote(path):
        return path
    dst = os.path.join(tempfile.mkdtemp(prefix=prefix), basename(path))
    if isdir(path):
        copy_dir(path, dst)
    else:
        epath.Path(str(path)).copy(epath.Path(dst))
    return dst
