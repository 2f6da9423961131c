"""How the detectors call a model: on one device, and its class count.

A trained model's variables are replicated over the training mesh; a
compiled program whose inputs are replicated over several devices runs on
each of them, which multiplies the work on a CPU with fake devices. The
detectors that optimise or sample per input (Neural Cleanse, STRIP,
Grad-CAM) run on the first local device instead.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def on_one_device(tree: Any) -> Any:
  """``tree``'s arrays committed to the first local device."""
  return jax.device_put(tree, jax.local_devices()[0])


def num_classes(model: Any, variables: Any,
                image_shape: tuple[int, ...]) -> int:
  """K, the width of the model's logits for images of ``image_shape``."""
  logits = jax.eval_shape(
      lambda x: model.apply(variables, x, train=False),
      jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
  return int(logits.shape[-1])
