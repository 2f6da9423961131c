"""Pruning repair: remove the last convolutional layer's least active channels.

The UBW paper's model pruning (Section 5.4.2, Appendix C.3) prunes the
channels of the last convolutional layer's output with 10% of the benign
training data, at rates 0%, 2%, ..., 98%. A channel's activity is its mean
activation on the clean images (Liu et al., 2018, "Fine-Pruning"): the
layer's output after its batch normalisation (when one follows) and a
ReLU, averaged over images and positions. At rate r the round(r C)
least active of the C channels (round half up; ties broken by channel
index) are pruned.

Pruning is an edit of the parameters, so the model keeps its class and
interface. In conv-BN-ReLU networks (``cnn``, ``vgg16_bn``) the last
convolution's kernel column (and bias) and the scale and offset of the
batch normalisation that follows are set to zero, which makes the
channel's output exactly zero for every input, and that zero is what the
next layer sees. In residual networks (``resnet18``, the WRNs: models
whose class sets ``prunes_pooled_stage``) the last convolution sits in a
residual branch that the shortcut bypasses, so the pruned channels are
those of the last stage's output, which the head reads through global
average pooling (the output the paper's reference defence masks): their
rows of the classifier's kernel are set to zero, which gives the logits of
masking those channels before the pooling.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import repair_engine
from jaxwm.models import common
from jaxwm.models import normalization
from jaxwm.train import loop
from jaxwm.train import recipe
from jaxwm.train import sharding
from jaxwm.train import step as step_lib

# The batch norms a model may follow a convolution with.
BATCH_NORMS = (nn.BatchNorm, normalization.BatchNorm)

# Images per forward pass when measuring channel activity.
ACTIVITY_BATCH_SIZE = 500


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  """Pruning settings.

  Attributes:
    rate: the share of the last convolution's channels to prune, in [0, 1)
      (UBW sweeps 0.0 to 0.98 in steps of 0.02).
  """

  rate: float = 0.5

  def __post_init__(self):
    check_rate(self.rate)


def check_rate(rate: float) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"the pruning rate must be in [0, 1), got {rate}.")


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """The convolution whose channels are pruned.

  Attributes:
    conv: path of the ``nn.Conv`` in the parameters, e.g. ``("Conv_1",)``.
    norm: path of the batch norm applied right after it, or None.
    channels: C, its number of output channels.
  """

  conv: tuple[str, ...]
  norm: tuple[str, ...] | None
  channels: int


@dataclasses.dataclass(frozen=True)
class PooledStage:
  """The last stage's output of a residual network, as its head reads it.

  Attributes:
    head: path of the classifier ``nn.Dense`` whose input [B, C] is the
      stage's output averaged over positions, e.g. ``("head",)``.
    channels: C, the stage's channels (the rows of the head's kernel).
  """

  head: tuple[str, ...]
  channels: int


PrunedLayer = ConvLayer | PooledStage


def _calls(model: nn.Module, variables: Any,
           image_shape: tuple[int, ...]) -> list[tuple[tuple[str, ...],
                                                        nn.Module]]:
  """(path, module) of every module call of a forward pass, in order."""
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      calls.append((tuple(context.module.path), context.module))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: model.apply(
        v, jnp.zeros((1, *image_shape), jnp.float32), train=False),
                   variables)
  return calls


def last_conv_layer(model: recipe.TrainedModel,
                    image_shape: tuple[int, ...]) -> ConvLayer:
  """The last ``nn.Conv`` a forward pass calls, and its batch norm.

  Raises:
    ValueError: the model has no convolution.
  """
  calls = _calls(model.model, model.variables, image_shape)
  convs = [i for i, (_, module) in enumerate(calls)
           if isinstance(module, nn.Conv)]
  if not convs:
    raise ValueError(
        f"{type(model.model).__name__} has no convolutional layer to prune; "
        "pruning needs a CNN (cnn, vgg16_bn, resnet18, ...).")
  index = convs[-1]
  path, conv = calls[index]
  follows = calls[index + 1] if index + 1 < len(calls) else (None, None)
  norm = follows[0] if isinstance(follows[1], BATCH_NORMS) else None
  return ConvLayer(path, norm, int(conv.features))


def pruned_layer(model: recipe.TrainedModel,
                 image_shape: tuple[int, ...]) -> PrunedLayer:
  """The layer pruning removes channels of: the last stage's pooled output
  when the model's class sets ``prunes_pooled_stage``, else
  :func:`last_conv_layer`."""
  if getattr(model.model, "prunes_pooled_stage", False):
    kernel = model.variables["params"][common.HEAD]["kernel"]
    return PooledStage((common.HEAD,), int(kernel.shape[0]))
  return last_conv_layer(model, image_shape)


def _pooled_activity(variables, images, model: nn.Module) -> jax.Array:
  """float32 [B, C]: the head's input, the stage's output (after its final
  ReLU) averaged over positions: each channel's mean activation."""
  _, sown, _ = common.apply_with_features(model, variables, images)
  return sown[common.FEATURES].astype(jnp.float32)


def _layer_activity(model: recipe.TrainedModel,
                    layer: PrunedLayer):
  """A jitted ``(variables, images [B, H, W, C]) -> float32 [B, C]``: each
  image's mean ReLU activation per channel of ``layer``."""
  rep = sharding.replicated(model.mesh)
  jit = functools.partial(
      jax.jit, in_shardings=(rep, sharding.batch_sharded(model.mesh)),
      out_shardings=rep)
  if isinstance(layer, PooledStage):
    return jit(lambda variables, images: _pooled_activity(
        variables, step_lib.to_float_images(images), model.model))
  source = layer.norm or layer.conv

  def is_source(module: nn.Module, method: str) -> bool:
    return method == "__call__" and tuple(module.path) == source

  def activity(variables, images):
    _, state = model.model.apply(
        variables, step_lib.to_float_images(images), train=False,
        capture_intermediates=is_source, mutable=["intermediates"])
    tree = state["intermediates"]
    for name in source:
      tree = tree[name]
    output = tree["__call__"][0]
    return jnp.mean(jax.nn.relu(output.astype(jnp.float32)), axis=(1, 2))

  return jit(activity)


@dataclasses.dataclass(frozen=True)
class ChannelRanking:
  """The pruned layer's channels with their activity on clean data.

  Attributes:
    layer: the pruned layer (:func:`pruned_layer`).
    activity: float64 [C], mean activation of each channel.
  """

  layer: PrunedLayer
  activity: np.ndarray

  def least_active(self, rate: float) -> np.ndarray:
    """The round(rate C) least active channels, int64 [n], least first."""
    check_rate(rate)
    count = math.floor(rate * self.layer.channels + 0.5)
    return np.argsort(self.activity, kind="stable")[:count]


def rank_channels(model: recipe.TrainedModel, clean: Dataset,
                  batch_size: int = ACTIVITY_BATCH_SIZE) -> ChannelRanking:
  """Measures the activity of the pruned layer's channels on ``clean``.

  Args:
    model: the suspect model.
    clean: the defender's clean images (labels unused).
    batch_size: images per forward pass.
  """
  repair_engine.check_clean_data(model, clean)
  layer = pruned_layer(model, clean.image_shape)
  per_image = loop.predict_logits(_layer_activity(model, layer),
                                  model.variables, clean.images, batch_size,
                                  model.mesh)
  return ChannelRanking(layer, per_image.astype(np.float64).mean(axis=0))


def _zero_channels(tree: dict, path: tuple[str, ...], names: tuple[str, ...],
                   channels: np.ndarray, axis: int = -1) -> dict:
  """``tree`` with ``axis`` of ``tree[*path][name]`` zeroed at
  ``channels``, for each of ``names`` present there."""
  if path:
    head, *rest = path
    return {**tree, head: _zero_channels(tree[head], tuple(rest), names,
                                         channels, axis)}
  return {**tree, **{name: _zeroed(tree[name], channels, axis)
                     for name in names if name in tree}}


def _zeroed(array: Any, channels: np.ndarray, axis: int) -> np.ndarray:
  array = np.array(array)
  np.moveaxis(array, axis, 0)[channels] = 0
  return array


def prune_variables(variables: dict, layer: PrunedLayer,
                    channels: np.ndarray) -> dict:
  """``variables`` with ``channels`` of ``layer`` removed.

  A convolution: zeroes its ``kernel[..., c]`` (and ``bias[c]``) and the
  following batch norm's ``scale[c]`` and ``bias[c]``, so that the
  channel's output is exactly zero. A pooled stage: zeroes the head's
  ``kernel[c, :]``, so that the logits no longer depend on channel c.
  """
  channels = np.asarray(channels, np.int64)
  params = jax.device_get(variables["params"])
  if isinstance(layer, PooledStage):
    params = _zero_channels(params, layer.head, ("kernel",), channels, axis=0)
  else:
    params = _zero_channels(params, layer.conv, ("kernel", "bias"), channels)
    if layer.norm is not None:
      params = _zero_channels(params, layer.norm, ("scale", "bias"),
                              channels)
  return {**variables, "params": params}


def prune(model: recipe.TrainedModel, ranking: ChannelRanking,
          rate: float) -> recipe.TrainedModel:
  """``model`` with the ``rate`` least active channels of the ranking's
  layer pruned (same class and interface)."""
  return repair_engine.with_variables(
      model, prune_variables(model.variables, ranking.layer,
                             ranking.least_active(rate)))


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: PruneConfig = PruneConfig(), *,
           workdir: str | None = None,
           stream: int = 0) -> recipe.TrainedModel:
  """Prunes ``model`` at ``settings.rate``, ranking channels on ``clean``.

  ``config``, ``workdir`` and ``stream`` are the other repairs' arguments,
  accepted so that every repair is called alike; pruning trains nothing.
  """
  del config, workdir, stream
  return prune(model, rank_channels(model, clean), settings.rate)
