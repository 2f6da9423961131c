"""A model's hidden representations of a set of images, batched on device.

The dataset-level detectors (spectral signatures, activation clustering)
work on the activations a jaxwm model sows (:mod:`jaxwm.models.common`):
``"features"``, the penultimate representation [N, D], by default, or a
named block's feature maps, flattened per sample.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxwm.models.common import FEATURES, apply_with_features
from jaxwm.train import loop, sharding
from jaxwm.train.step import to_float_images


def layer_activations(model: Any, variables: Any, images: np.ndarray,
                      layer: str = FEATURES, batch_size: int = 1000,
                      mesh: Mesh | None = None) -> np.ndarray:
  """The activation ``layer`` of ``model`` on ``images``, one row per image.

  Args:
    model: a jaxwm model (a ``flax.linen.Module``).
    variables: its variables (``TrainedModel.variables``).
    images: uint8 [N, H, W, C], or float [N, H, W, C] in [0, 1].
    layer: the name of a sown activation (``"features"``, ``"block1"``, ...).
    batch_size: images per compiled call.
    mesh: device mesh; default all devices.

  Returns:
    float32 [N, D], the activation flattened per image.

  Raises:
    ValueError: the model sows no activation named ``layer`` (the message
      lists those it sows).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  images = np.asarray(images)
  sown = jax.eval_shape(
      lambda x: apply_with_features(model, variables, x)[1],
      jax.ShapeDtypeStruct((1,) + images.shape[1:], np.float32))
  if layer not in sown:
    raise ValueError(f"the model sows no activation {layer!r}; choose one of "
                     f"{sorted(sown)}.")

  def activation(variables, batch):
    _, sown, _ = apply_with_features(model, variables,
                                     to_float_images(batch))
    return sown[layer].reshape(batch.shape[0], -1).astype(np.float32)

  rep = sharding.replicated(mesh)
  compiled = jax.jit(activation, in_shardings=(rep,
                                               sharding.batch_sharded(mesh)),
                     out_shardings=rep)
  return loop.predict_logits(compiled, variables, images, batch_size, mesh)
