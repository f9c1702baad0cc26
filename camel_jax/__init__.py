"""camel_jax: TÜLU instruction tuning in JAX/Flax.

Importing the package (every `python -m camel_jax.<command>` does, before any submodule) keeps JAX from starting
libtpu on a host that has libtpu installed but no TPU (the `tpu` and `test` extras install it everywhere, for the
compile-only planner). With JAX_PLATFORMS unset JAX initialises every backend it finds; libtpu then looks for the
slice this host belongs to, finds no TPU_WORKER_HOSTNAMES / accelerator type, and prints several lines of errors
before JAX falls back to the CPU. JAX itself only skips libtpu's metadata query there (TPU_SKIP_MDS_QUERY); the
planner sets the slice variables, but only once it describes a topology, so every other command was noisy.

So when libtpu is importable, no TPU chip is on the PCI bus (JAX's own test: Google's vendor id and a TPU device
id), no GPU device node exists, JAX_PLATFORMS is unset and JAX_FORCE_TPU_INIT is not asked for, JAX_PLATFORMS is set
to "cpu" — the platform JAX would have ended on anyway. Compiling for a TPU topology (`camel_jax.plan`) needs no
TPU backend and works unchanged. Stdlib only: this runs before jax is imported, which is when JAX reads it.
"""
from __future__ import annotations

import glob
import importlib.util
import os

_GOOGLE_PCI_VENDOR = "0x1ae0"
# TPU PCI device ids, as jax/_src/hardware_utils.py lists them (v3, plc, v4, v5p, v5e, v6e, tpu7x).
_TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}
_GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def tpu_chips(pci_root: str = "/sys/bus/pci/devices") -> int:
    """TPU chips attached to this host through PCI (0 off a TPU VM)."""
    return sum(_read(os.path.join(os.path.dirname(v), "device")) in _TPU_PCI_DEVICES
               for v in glob.glob(os.path.join(pci_root, "*", "vendor")) if _read(v) == _GOOGLE_PCI_VENDOR)


def quiet_platforms(environ=os.environ, pci_root: str = "/sys/bus/pci/devices") -> str | None:
    """The JAX_PLATFORMS value that keeps libtpu from starting on a TPU-less host, or None to leave JAX alone."""
    if "JAX_PLATFORMS" in environ or environ.get("JAX_FORCE_TPU_INIT", "").lower() in ("1", "true", "yes"):
        return None
    if not (environ.get("TPU_LIBRARY_PATH") or importlib.util.find_spec("libtpu")):
        return None
    if any(os.path.exists(d) for d in _GPU_DEVICE_NODES) or tpu_chips(pci_root):
        return None
    return "cpu"


_platforms = quiet_platforms()
if _platforms is not None:
    os.environ["JAX_PLATFORMS"] = _platforms
