"""Placement of a detector's inputs on one device.

A trained model's variables are replicated over the training mesh; a
compiled program whose inputs are replicated over several devices runs on
each of them, which multiplies the work on a CPU with fake devices. The
detectors that optimise or sample per input (Neural Cleanse, STRIP,
Grad-CAM) run on the first local device instead.
"""

from __future__ import annotations

from typing import Any

import jax


def on_one_device(tree: Any) -> Any:
  """``tree``'s arrays committed to the first local device."""
  return jax.device_put(tree, jax.local_devices()[0])
