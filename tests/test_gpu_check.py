"""scripts/gpu_check.sh without a usable GPU: it skips with the reason (exit 0) when there is none, and when a GPU is
listed but JAX has no CUDA backend it says what to install (exit 2). The check itself needs a GPU; its plumbing runs
here as `GPU_CHECK_PLATFORM=cpu bash scripts/gpu_check.sh` (README), too slow for the suite."""
import os
import pathlib
import shutil
import subprocess

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _run(tmp_path, nvidia_smi: str | None):
    """The script with PATH stripped of any real nvidia-smi and, if given, a fake one printing `nvidia_smi`."""
    real = shutil.which("nvidia-smi")
    dirs = [d for d in os.environ["PATH"].split(os.pathsep) if not (real and os.path.dirname(real) == d)]
    if nvidia_smi is not None:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '%b' '{nvidia_smi}'\n")
        (fake / "nvidia-smi").chmod(0o755)
        dirs.insert(0, str(fake))
    env = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_PLATFORM"}
    env.update(PATH=os.pathsep.join(dirs), PYTHONPATH=str(REPO))
    return subprocess.run(["bash", str(SCRIPT), "--steps", "1"], env=env, capture_output=True, text=True, timeout=120)


def test_skips_without_nvidia_smi(tmp_path):
    r = _run(tmp_path, None)
    assert (r.returncode, r.stdout, r.stderr) == (0, "gpu_check: SKIPPED: no NVIDIA GPU here (nvidia-smi not found)\n",
                                                  "")


def test_skips_when_nvidia_smi_lists_no_gpu(tmp_path):
    r = _run(tmp_path, "No devices were found\\n")
    assert r.returncode == 0 and r.stdout == "gpu_check: SKIPPED: no NVIDIA GPU here (nvidia-smi -L lists none)\n"


def test_a_gpu_jax_cannot_use_is_an_error_naming_the_install(tmp_path):
    try:
        jax.devices("gpu")
        pytest.skip("this JAX has a GPU backend")
    except RuntimeError:
        pass
    r = _run(tmp_path, "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-0)\\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-1)\\n")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"gpu_check: error: nvidia-smi lists 2 GPU(s) but JAX {jax.__version__} has no CUDA backend; "
                        f"install one: pip install 'jax[cuda12]=={jax.__version__}'\n")
