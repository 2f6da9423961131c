"""Test set-up: 8 fake CPU devices, so that sharded code is exercised on CPU.

XLA reads the flag when JAX initialises its backend, so it is set here, before
any test module imports jax.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") +
    " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
