"""Test-wide set-up: 8 simulated CPU devices, and the path to ../shared (tests needing it skip, visibly, without it)."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
