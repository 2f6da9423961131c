"""Grad-CAM (Selvaraju et al., ICCV 2017) saliency maps, and how much of the
saliency a trigger's region draws.

For an image, a class c with score (logit) y_c and the feature maps A
[h, w, d] of a convolutional layer, Grad-CAM weighs each channel k by the
spatial mean of the gradient, ``alpha_k = mean_ij dy_c / dA_ijk``, and maps
``ReLU(sum_k alpha_k A_k)``, bilinearly resized to the image and divided by
its maximum. The layer is a submodule of the model named by its flax path
(e.g. ``"BatchNorm_1"``, the last conv block of jaxwm's CNN, or
``"BasicBlock_7"`` of ResNet-18); by default the last submodule whose
output is a feature map [B, h, w, d]. (A sown activation such as
``"block2"`` cannot serve: sowing records a value but does not route the
computation through anything a gradient can be taken against, so Grad-CAM
adds a zero to a submodule's output and differentiates against that.) The
UBW paper (Appendix G.2,
Figure 11) compares where the maps of triggered images fall: on the trigger
for BadNets, elsewhere for UBW.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.defenses import image_grids
from jaxwm.defenses._model_calls import num_classes, on_one_device
from jaxwm.poison import triggers
from jaxwm.train.step import to_float_images


def _path(context: Any) -> str:
  return "/".join(context.module.path)


def _output_shapes(model: Any, variables: Any, images: Any
                   ) -> list[tuple[str, tuple[int, ...]]]:
  """(path, output shape) of every submodule call, in call order, for
  ``images`` (an array or a ``jax.ShapeDtypeStruct``)."""
  calls = []

  def record(next_fun, args, kwargs, context):
    output = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path:
      calls.append((_path(context), tuple(getattr(output, "shape", ()))))
    return output

  with nn.intercept_methods(record):
    jax.eval_shape(lambda x: model.apply(variables, x, train=False), images)
  return calls


def feature_map_layers(model: Any, variables: Any,
                       image_shape: tuple[int, ...]) -> list[str]:
  """Paths of the submodules whose output is a feature map [B, h, w, d], in
  call order."""
  images = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  return [path for path, shape in _output_shapes(model, variables, images)
          if len(shape) == 4]


def _resolve_layer(model: Any, variables: Any, image_shape: tuple[int, ...],
                   layer: str | None) -> str:
  """``layer``, checked, or the last feature-map layer when None."""
  layers = feature_map_layers(model, variables, image_shape)
  if layer is None and not layers:
    raise ValueError("the model has no submodule with a feature-map output "
                     "[B, h, w, d]; Grad-CAM needs a convolutional layer.")
  layer = layers[-1] if layer is None else layer
  if layer not in layers:
    raise ValueError(f"layer {layer!r} is no submodule with a feature-map "
                     f"output; choose one of {layers}.")
  return layer


@functools.partial(jax.jit, static_argnames=("model", "layer"))
def _grad_cam(variables: Any, images: jax.Array, classes: jax.Array,
              delta: jax.Array, *, model: Any,
              layer: str) -> tuple[jax.Array, jax.Array]:

  def score(delta):
    captured = []

    def tap(next_fun, args, kwargs, context):
      output = next_fun(*args, **kwargs)
      if context.method_name == "__call__" and _path(context) == layer:
        captured.append(output)
        return output + delta
      return output

    with nn.intercept_methods(tap):
      logits = model.apply(variables, images, train=False)
    if len(captured) != 1:
      raise ValueError(f"layer {layer!r} ran {len(captured)} times in one "
                       "forward pass; Grad-CAM needs a layer that runs once.")
    chosen = jnp.where(classes < 0, jnp.argmax(logits, -1), classes)
    chosen = jax.lax.stop_gradient(chosen)
    return jnp.sum(jnp.take_along_axis(logits, chosen[:, None], 1)), (
        captured[0], chosen)

  grads, (features, chosen) = jax.grad(score, has_aux=True)(delta)
  weights = jnp.mean(grads, axis=(1, 2))
  maps = jax.nn.relu(jnp.einsum("bhwd,bd->bhw", features, weights))
  maps = jax.image.resize(maps, images.shape[:3], "bilinear")
  peak = jnp.max(maps, axis=(1, 2), keepdims=True)
  return jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0),
                   0.0), chosen


def grad_cam(model: Any, variables: Any, images: np.ndarray,
             layer: str | None = None, classes: np.ndarray | None = None,
             batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """Grad-CAM maps of ``images`` for their predicted (or given) classes.

  Args:
    model: a jaxwm model.
    variables: its variables.
    images: uint8 [N, H, W, C] or float in [0, 1].
    layer: the flax path of the submodule whose output is A; default the
      last of :func:`feature_map_layers`.
    classes: int [N], the class whose score to explain per image; None for
      the predicted class.
    batch_size: images per compiled call.

  Returns:
    (maps float32 [N, H, W] in [0, 1], each with maximum 1 unless all zero;
    the explained classes int [N]).
  """
  images = np.asarray(images)
  if images.ndim != 4 or not images.shape[0]:
    raise ValueError(f"images must be [N, H, W, C] with N >= 1, got shape "
                     f"{images.shape}.")
  layer = _resolve_layer(model, variables, images.shape[1:], layer)
  if classes is None:
    classes = np.full(images.shape[0], -1)
  classes = np.asarray(classes)
  count = num_classes(model, variables, images.shape[1:])
  if (classes.shape != images.shape[:1] or
      not np.issubdtype(classes.dtype, np.integer) or classes.min() < -1 or
      classes.max() >= count):
    raise ValueError(
        f"classes must be integers [N] = [{images.shape[0]}] in [0, "
        f"{count}) (or None for the predicted classes), got dtype "
        f"{classes.dtype} and shape {classes.shape}.")
  variables = on_one_device(variables)
  maps, chosen = [], []
  for start in range(0, images.shape[0], batch_size):
    batch = to_float_images(jnp.asarray(images[start:start + batch_size]))
    delta = jnp.zeros(dict(_output_shapes(model, variables, batch))[layer])
    batch_maps, batch_chosen = _grad_cam(
        *on_one_device((variables, batch,
                        jnp.asarray(classes[start:start + batch_size]),
                        delta)), model=model, layer=layer)
    maps.append(np.asarray(batch_maps))
    chosen.append(np.asarray(batch_chosen))
  return np.concatenate(maps), np.concatenate(chosen)


def trigger_region(trigger: triggers.Trigger) -> np.ndarray:
  """bool [H, W], the pixels a blending trigger changes (alpha > 0).

  Raises:
    TypeError: a warping trigger (WaNet) moves every pixel and has no
      region.
  """
  if not isinstance(trigger, triggers.BlendTrigger):
    raise TypeError(f"the {trigger.name} trigger warps the whole image and "
                    "has no region; pass a region mask instead.")
  return np.asarray(trigger.alpha).max(axis=-1) > 0


def saliency_share(maps: np.ndarray, region: np.ndarray) -> np.ndarray:
  """The share of each map's mass inside ``region``.

  Args:
    maps: float [N, H, W], non-negative.
    region: bool [H, W] (or [N, H, W]), e.g. :func:`trigger_region`.

  Returns:
    float64 [N] in [0, 1]; an all-zero map counts as uniform (its share is
    the region's area fraction).
  """
  maps = np.asarray(maps, np.float64)
  region = np.asarray(region, bool)
  if maps.ndim != 3 or region.shape[-2:] != maps.shape[1:]:
    raise ValueError(f"maps must be [N, H, W] and region [H, W] of the same "
                     f"H, W, got {maps.shape} and {region.shape}.")
  if maps.min(initial=0.0) < 0:
    raise ValueError("maps must be non-negative.")
  region = np.broadcast_to(region, maps.shape)
  total = maps.sum(axis=(1, 2))
  inside = np.sum(maps * region, axis=(1, 2))
  uniform = region.mean(axis=(1, 2))
  return np.where(total > 0, inside / np.where(total > 0, total, 1.0),
                  uniform)


@dataclasses.dataclass(frozen=True)
class TriggerSaliency:
  """Grad-CAM maps of triggered and clean images against a trigger region.

  Attributes:
    triggered_maps: float32 [N, H, W], maps of the triggered images.
    clean_maps: float32 [N, H, W], maps of the same images without trigger.
    triggered_share: float64 [N], :func:`saliency_share` in the region.
    clean_share: float64 [N], likewise for the clean images.
    region_fraction: the region's share of the image (a uniform map's
      share).
    layer: the explained layer.
  """

  triggered_maps: np.ndarray
  clean_maps: np.ndarray
  triggered_share: np.ndarray
  clean_share: np.ndarray
  region_fraction: float
  layer: str

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results (without the maps)."""
    return {"layer": self.layer, "region_fraction": self.region_fraction,
            "mean_triggered_share": float(self.triggered_share.mean()),
            "mean_clean_share": float(self.clean_share.mean()),
            "num_images": int(self.triggered_share.size)}


def trigger_saliency(model: Any, variables: Any, clean: np.ndarray,
                     triggered: np.ndarray, region: np.ndarray,
                     layer: str | None = None) -> TriggerSaliency:
  """Grad-CAM of images with and without the trigger, and their shares of
  saliency inside the trigger's region (each for its predicted class).

  Args:
    model: a jaxwm model.
    variables: its variables.
    clean: uint8 or float [N, H, W, C], clean images.
    triggered: the same images with the trigger, same shape and dtype.
    region: bool [H, W], the trigger's pixels (:func:`trigger_region`).
    layer: as in :func:`grad_cam`.

  Returns:
    A :class:`TriggerSaliency`.
  """
  clean, triggered = np.asarray(clean), np.asarray(triggered)
  if clean.shape != triggered.shape:
    raise ValueError(f"clean {clean.shape} and triggered {triggered.shape} "
                     "must be the same images with and without trigger.")
  layer = _resolve_layer(model, variables, clean.shape[1:], layer)
  triggered_maps, _ = grad_cam(model, variables, triggered, layer)
  clean_maps, _ = grad_cam(model, variables, clean, layer)
  return TriggerSaliency(
      triggered_maps, clean_maps, saliency_share(triggered_maps, region),
      saliency_share(clean_maps, region),
      float(np.asarray(region, bool).mean()), layer)


def save_trigger_saliency_grid(path: str, triggered: np.ndarray,
                               saliency: TriggerSaliency,
                               count: int = 10) -> None:
  """Writes the first ``count`` triggered images with their Grad-CAM maps as
  a PNG grid (the UBW paper's Figure 11), titled with the region's share."""
  count = min(count, len(saliency.triggered_share))
  titles = [f"in trigger {share:.0%}"
            for share in saliency.triggered_share[:count]]
  image_grids.save_saliency_grid(path, np.asarray(triggered)[:count],
                                 saliency.triggered_maps[:count], titles)
