"""TPU devices to compile for (never run on) from this CPU host, through libtpu's topology descriptions."""
import os

import pytest


def tpu_devices(num_slices: int = 1) -> list:
    """The chips of `num_slices` TPU v5e 2x2 slices. Without libtpu (a CPU-only install) the test skips with the
    reason; under CI=true, whose install brings libtpu (the test extra), it fails instead."""
    try:
        from jax.experimental.topologies import get_topology_desc

        return get_topology_desc(platform="tpu", topology_name="v5e:2x2", chip_config_name="default",
                                 chips_per_host_bounds=(2, 2, 1), num_slices=num_slices).devices
    except Exception as e:
        msg = f"compiling for TPU needs libtpu (pip install -e '.[tpu]'): {type(e).__name__}: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
