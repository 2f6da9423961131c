"""Pruning repair: remove the last convolution's least active channels.

The UBW paper's model pruning (Section 5.4.2, Appendix C.3) prunes the
channels of the last convolutional layer's output with 10% of the benign
training data, at rates 0%, 2%, ..., 98%. A channel's activity is its mean
activation on the clean images (Liu et al., 2018, "Fine-Pruning"): the
layer's output after its batch normalisation (when one follows) and a
ReLU, averaged over images and positions. At rate r the round(r C)
least active of the C channels (round half up; ties broken by channel
index) are pruned.

Pruning is an edit of the parameters, so the model keeps its class and
interface: the channel's kernel column (and bias) and the scale and offset
of the batch normalisation that follows are set to zero, which makes the
channel's output exactly zero for every input. In conv-BN-ReLU networks
(``cnn``, ``vgg16_bn``) that zero is what the next layer sees; in a
residual block (``resnet18``) the pruned convolution is the last one of
the residual branch, and the shortcut still adds to the block's output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import repair_engine
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


def _layer_activity(model: recipe.TrainedModel,
                    layer: ConvLayer):
  """A jitted ``(variables, images [B, H, W, C]) -> float32 [B, C]``: each
  image's mean ReLU activation per channel of ``layer``."""
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

  rep = sharding.replicated(model.mesh)
  return jax.jit(activity,
                 in_shardings=(rep, sharding.batch_sharded(model.mesh)),
                 out_shardings=rep)


@dataclasses.dataclass(frozen=True)
class ChannelRanking:
  """The last convolution's channels with their activity on clean data.

  Attributes:
    layer: the pruned convolution.
    activity: float64 [C], mean activation of each channel.
  """

  layer: ConvLayer
  activity: np.ndarray

  def least_active(self, rate: float) -> np.ndarray:
    """The round(rate C) least active channels, int64 [n], least first."""
    check_rate(rate)
    count = math.floor(rate * self.layer.channels + 0.5)
    return np.argsort(self.activity, kind="stable")[:count]


def rank_channels(model: recipe.TrainedModel, clean: Dataset,
                  batch_size: int = ACTIVITY_BATCH_SIZE) -> ChannelRanking:
  """Measures the activity of the last convolution's channels on ``clean``.

  Args:
    model: the suspect model.
    clean: the defender's clean images (labels unused).
    batch_size: images per forward pass.
  """
  repair_engine.check_clean_data(model, clean)
  layer = last_conv_layer(model, clean.image_shape)
  per_image = loop.predict_logits(_layer_activity(model, layer),
                                  model.variables, clean.images, batch_size,
                                  model.mesh)
  return ChannelRanking(layer, per_image.astype(np.float64).mean(axis=0))


def _zero_channels(tree: dict, path: tuple[str, ...], names: tuple[str, ...],
                   channels: np.ndarray) -> dict:
  """``tree`` with the last axis of ``tree[*path][name]`` zeroed at
  ``channels``, for each of ``names`` present there."""
  if path:
    head, *rest = path
    return {**tree, head: _zero_channels(tree[head], tuple(rest), names,
                                         channels)}
  return {**tree, **{name: _zeroed(tree[name], channels)
                     for name in names if name in tree}}


def _zeroed(array: Any, channels: np.ndarray) -> np.ndarray:
  array = np.array(array)
  array[..., channels] = 0
  return array


def prune_variables(variables: dict, layer: ConvLayer,
                    channels: np.ndarray) -> dict:
  """``variables`` with ``channels`` of ``layer`` removed.

  Zeroes the convolution's ``kernel[..., c]`` (and ``bias[c]``) and the
  following batch norm's ``scale[c]`` and ``bias[c]``: the channel's
  output is then exactly zero.
  """
  channels = np.asarray(channels, np.int64)
  params = jax.device_get(variables["params"])
  params = _zero_channels(params, layer.conv, ("kernel", "bias"), channels)
  if layer.norm is not None:
    params = _zero_channels(params, layer.norm, ("scale", "bias"), channels)
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
