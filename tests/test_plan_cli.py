"""`python -m camel_jax.plan`: --json's keys on a plan the compiler refuses (an answer, exit 0, no traceback), and
every user mistake as one `prog: error:` line with exit code 2."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = "python -m camel_jax.plan"
KEYS = {"verdict", "fits", "bytes_per_device", "hbm_bytes_per_device", "flops_per_step", "topology", "mesh", "model",
        "memory", "oom", "flops", "step_seconds_at_peak", "step_seconds_at_mfu", "tokens_per_second_at_mfu", "mfu",
        "train_command"}


def _run(*args):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "camel_jax.plan", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_json_of_a_compiler_oom():
    from tpu_util import tpu_devices

    tpu_devices()  # skips (with the reason) without libtpu
    p = _run("--model=llama-65b", "--topology=v4-8", "--json")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert KEYS <= set(out), KEYS - set(out)
    assert out["verdict"] == "does not fit" and out["fits"] is False and out["model"] == "llama-65b"
    assert out["bytes_per_device"] > out["hbm_bytes_per_device"] == int(round(30.75 * 2**30))
    assert (out["seq_len"], out["batch_size"], out["grad_accum"], out["remat"]) == (1024, 128, 16, "full")
    assert out["flops_per_step"] == pytest.approx(6 * 65e9 * 128 * 1024, rel=0.06)
    assert out["train_command"] == ("python -m camel_jax.train --config=camel_jax/train/config.py:llama-65b,"
                                    "tulu_human_gpt_mix --mesh=dp1,fsdp4,mp1")


@pytest.mark.parametrize("args, message", [
    (["--model=tiny-mha", "--topology=v4-63"], "--topology='v4-63': v4-N counts TensorCores"),
    (["--model=tiny-mha"], "--topology is required"),
    (["--model=tiny-mha", "--config=configs/base.py", "--topology=v4-8"], "give --config or --model, not both"),
    (["--model=llama-8b", "--topology=v4-8"], "--model=llama-8b: unknown preset"),
    (["--model=tiny-mha", "--config.train.bogus=1", "--topology=v4-8"], "config.train has no field 'bogus'"),
    (["--model=tiny-mha", "--topology=v4-8", "--config.train.batch_size=12"],
     "config.train.batch_size=12: micro-batch batch_size/grad_accum = 3 rows is not divisible by dp×fsdp"),
    (["--model=tiny-mha", "--topology=v4-8", "--mesh=mp3"], "--mesh='mp3' needs 3 devices but 4"),
    (["--model=tiny-mha", "--topology=v4-8", "--search", "--mesh=fsdp4"], "--search chooses the mesh"),
])
def test_usage_errors_are_one_line_exit_2(args, message):
    p = _run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ") and message in lines[0], p.stderr
