"""Test-wide set-up: 8 simulated CPU devices, and the path to ../shared (tests needing it skip, visibly, without it)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TPU compiles here are compile-only: let a test's process load libtpu while another holds its lockfile (a test
# subprocess, or a second test run on the same machine) instead of failing with "libtpu multi-process lockfile".
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# One XLA compilation cache for the test process's session: many tests compile the same engine, scorer and train
# programs again (each Engine, each run jits its own closures). A fresh directory per session, removed at exit, so
# a CI run's time is never flattered by an earlier run's cache. Set in this process only, never passed to the
# subprocesses tests start: a multi-process (jax.distributed, gloo) program and a one-process program on the same
# 8 devices can share a cache key, and a one-process run that loaded the other's executable aborted in its
# all-reduce (seen in a full run).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    import jax

    _cache = tempfile.mkdtemp(prefix="camel_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("CAMEL_JAX_SHARED", REPO.parent / "shared"))
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data, or a skip naming what is missing."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"needs the shared data folder {path} (present in CI; absent in a user's fresh clone)")
    return path


@pytest.fixture(scope="session")
def smollm2(shared_data, tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per session from its GGUF (tests/smollm2_util.py), or a skip."""
    from smollm2_util import convert

    return convert(shared_data, tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="session")
def eval_ckpt(shared_data, tmp_path_factory) -> str:
    """The tiny random checkpoint with the LLaMA tokenizer the evaluate end-to-end tests run (tests/eval_util.py)."""
    from eval_util import tiny_checkpoint

    return tiny_checkpoint(shared_data, tmp_path_factory.mktemp("eval_ckpt"))


@pytest.fixture(scope="session")
def eval_data(shared_data, tmp_path_factory) -> str:
    """A small eval data folder in ../shared/data's layout (a few MMLU subjects, the other benchmarks whole)."""
    from eval_util import mini_data_dir

    return mini_data_dir(shared_data, tmp_path_factory.mktemp("eval_data"))


def missing(reason: str):
    """Skip with the reason; under CI=true fail instead, so a missing install step in .ci/run cannot pass green."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: .ci/run must install it")
    pytest.skip(reason)


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """One headless Debian chromium per test module, through Playwright with `executable_path` (never `playwright
    install`, which downloads from outside). Skips, or fails under CI=true, when chromium or playwright is absent.
    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in the main thread while
    it is open, so any later test calling asyncio.run() would fail ("cannot be called from a running event loop")."""
    if not os.path.exists(CHROMIUM):
        missing(f"the browser tests need chromium at {CHROMIUM} (apt-get install chromium; or set $CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the browser tests need playwright (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page per test (own cookies), closed after it."""
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
