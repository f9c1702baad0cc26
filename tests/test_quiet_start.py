"""camel_jax/__init__.py: on a host with libtpu but no TPU, commands start without libtpu's errors.

The subprocess runs a real command *without* JAX_PLATFORMS (the tests' own environment sets it), which used to print
libtpu's TPU_WORKER_HOSTNAMES / accelerator-type errors; the decision itself is checked on fake PCI trees."""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import camel_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
ASSETS = REPO / "camel_jax" / "assets" / "stories260k"


def _pci(tmp_path, devices):
    for i, (vendor, device) in enumerate(devices):
        d = tmp_path / f"0000:00:{i:02x}.0"
        d.mkdir()
        (d / "vendor").write_text(vendor + "\n")
        (d / "device").write_text(device + "\n")
    return str(tmp_path)


def test_tpu_chips_counts_google_tpu_devices_only(tmp_path):
    root = _pci(tmp_path, [("0x1ae0", "0x005e"), ("0x1ae0", "0x005e"), ("0x1ae0", "0x1234"), ("0x8086", "0x005e")])
    assert camel_jax.tpu_chips(root) == 2
    assert camel_jax.tpu_chips(str(tmp_path / "absent")) == 0


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed: nothing to silence")
def test_quiet_platforms_only_where_libtpu_would_find_no_tpu(tmp_path, monkeypatch):
    monkeypatch.setattr(camel_jax, "_GPU_DEVICE_NODES", ())
    (tmp_path / "cpu_host").mkdir()
    no_tpu = _pci(tmp_path / "cpu_host", [("0x8086", "0x1237")])
    assert camel_jax.quiet_platforms({}, no_tpu) == "cpu"
    assert camel_jax.quiet_platforms({"JAX_PLATFORMS": ""}, no_tpu) is None  # the user's choice, even empty
    assert camel_jax.quiet_platforms({"JAX_PLATFORMS": "tpu"}, no_tpu) is None
    assert camel_jax.quiet_platforms({"JAX_FORCE_TPU_INIT": "1"}, no_tpu) is None
    (tmp_path / "tpu_vm").mkdir()
    assert camel_jax.quiet_platforms({}, _pci(tmp_path / "tpu_vm", [("0x1ae0", "0x0063")])) is None  # a v5e VM
    gpu_node = tmp_path / "nvidia0"
    gpu_node.write_text("")
    monkeypatch.setattr(camel_jax, "_GPU_DEVICE_NODES", (str(gpu_node),))
    assert camel_jax.quiet_platforms({}, no_tpu) is None  # a GPU host keeps JAX's own choice


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed: nothing to silence")
@pytest.mark.skipif(camel_jax.tpu_chips() > 0, reason="this host has TPU chips: libtpu is meant to start")
def test_a_command_without_jax_platforms_starts_quietly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_PLATFORMS", "TPU_"))}
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / "ckpt"
    r = subprocess.run([sys.executable, "-m", "camel_jax.convert", "import-llama2c", str(ASSETS / "stories260K.bin"),
                        str(ASSETS / "tok512.bin"), str(out)], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "260,032 parameters" in r.stdout  # it ran (jax initialised a backend and wrote the checkpoint)
    assert r.stderr == "", r.stderr
