"""WILD: watermark removal with limited data (Liu, Li, Wen and Li).

A backdoor watermark is a trigger the model has learned to follow; WILD
imitates unknown triggers by occlusion and trains the model to answer an
occluded image as it answers the original. On the defender's clean data
(about 10% of the training set), each batch holds the augmented images x
and copies of them with one random rectangle erased, e(x) (Random
Erasing, Zhong et al., 2020), and the loss is

    L = CE(f(x), y) + CE(f(e(x)), y) + lambda * D(g(x), g(e(x)))

where g is the logits or a chosen feature layer and D a divergence
between the two as distributions (softmax over the layer's units):
cross-entropy ``D = -sum_k p_k log q_k`` of the erased view's q under the
clean view's p, or the Jensen-Shannon divergence
``D = KL(p || m) / 2 + KL(q || m) / 2``, m = (p + q) / 2. Gradients flow
through both views.

WILD's description fixes neither lambda, the layer nor the erasing
parameters; jaxwm's defaults (:class:`WildConfig`) are lambda = 5, the
logits, Jensen-Shannon (lambda = 0.5 suits the cross-entropy), and Random Erasing's usual area range (0.02, 0.33)
and aspect range (0.3, 3.3) with probability 1 (every copy is erased, so
every pair differs) and a uniform random fill; each can be changed for an
ablation. The training is jaxwm's choice too: 10 epochs at a constant
learning rate of 0.05, and the repaired model is the mean of the weights
and batch statistics at the ends of the last 4 epochs (stochastic weight
averaging, :mod:`jaxwm.train.weight_average`), which gives back about a
point of the benign accuracy that training on little data costs. lambda
was chosen on one Fashion-MNIST CNN (seed 0), the learning rate and the
averaging on another (seed 2), as the settings that remove content and
noise trigger sets to at most 20% for the least benign accuracy
(``docs/defenses.md``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from jaxwm.data import augment as augment_lib
from jaxwm.data.dataset import Dataset
from jaxwm.defenses import repair_engine
from jaxwm.train import losses
from jaxwm.train import recipe
from jaxwm.train import weight_average
from jaxwm.train.state import TrainState

CROSS_ENTROPY = "ce"
JENSEN_SHANNON = "js"
DIVERGENCES = (CROSS_ENTROPY, JENSEN_SHANNON)
LOGITS = "logits"


@dataclasses.dataclass(frozen=True)
class WildConfig:
  """WILD's settings (all jaxwm's choices; see the module docstring).

  Attributes:
    weight: lambda, the weight of the divergence term (>= 0). The default,
      5, was chosen for the Jensen-Shannon divergence (at most log 2);
      the cross-entropy is unbounded and wants about a tenth of it (0.5
      in the removal matrix's ``wild_ce`` column, ``configs/removal.py``).
    divergence: ``"js"`` (Jensen-Shannon) or ``"ce"`` (cross-entropy).
    layer: ``"logits"`` or the name of an activation the model sows
      (``"features"``, ``"block2"``, ...), compared as a softmax over its
      flattened units.
    erasing_probability: the chance that a copy is erased.
    erasing_scale: bounds of the erased area's share of the image.
    erasing_ratio: bounds of the erased rectangle's aspect ratio h / w.
    erasing_value: the fill, a constant in [0, 1] or ``"random"``.
    learning_rate: the learning rate (the first of a step or cosine
      schedule).
    num_epochs: epochs over the clean data.
    schedule: ``"constant"``, ``"cosine"`` (decay to 0 over the epochs)
      or ``"step"`` (a tenth of the rate for the last fifth of them).
    average_epochs: the repaired model is the mean of the weights and
      batch statistics at the ends of this many last epochs (stochastic
      weight averaging); 0 or 1: the last epoch's.
  """

  weight: float = 5.0
  divergence: str = JENSEN_SHANNON
  layer: str = LOGITS
  erasing_probability: float = 1.0
  erasing_scale: tuple[float, float] = (0.02, 0.33)
  erasing_ratio: tuple[float, float] = (0.3, 3.3)
  erasing_value: float | str = "random"
  learning_rate: float = 0.05
  num_epochs: int = 10
  schedule: str = repair_engine.CONSTANT
  average_epochs: int = 4

  def __post_init__(self):
    if not self.weight >= 0:
      raise ValueError(f"weight (lambda) must be >= 0, got {self.weight}.")
    if self.divergence not in DIVERGENCES:
      raise ValueError(f"divergence must be one of {DIVERGENCES}, got "
                       f"{self.divergence!r}.")
    object.__setattr__(self, "erasing_scale", tuple(self.erasing_scale))
    object.__setattr__(self, "erasing_ratio", tuple(self.erasing_ratio))
    object.__setattr__(self, "erasing_value",
                       _erasing_fill(self.erasing_value))
    augment_lib.check_random_erasing(
        self.erasing_probability, self.erasing_scale, self.erasing_ratio,
        self.erasing_value)
    repair_engine.check_schedule(self.learning_rate, self.num_epochs,
                                 self.schedule)
    weight_average.check_average_epochs(self.average_epochs, self.num_epochs)

  def erase(self, images: jax.Array, key: jax.Array) -> jax.Array:
    """float [B, H, W, C] -> the images with one random rectangle erased
    (each with probability ``erasing_probability``)."""
    return augment_lib.random_erasing(
        images, key, self.erasing_probability, self.erasing_scale,
        self.erasing_ratio, self.erasing_value)


def _erasing_fill(value: float | str) -> float | str:
  """``"random"``, or the constant fill as a float in [0, 1] (a number
  typed on the command line arrives as a string)."""
  if value == "random":
    return value
  try:
    fill = float(value)
  except (TypeError, ValueError):
    fill = float("nan")
  if not 0.0 <= fill <= 1.0:
    raise ValueError(f"erasing_value must be 'random' or a number in [0, 1], "
                     f"got {value!r}.")
  return fill


def cross_entropy_divergence(p_logits: jax.Array,
                             q_logits: jax.Array) -> jax.Array:
  """-sum_k p_k log q_k per row, p = softmax(p_logits), q likewise.

  Args:
    p_logits, q_logits: float [B, D].

  Returns:
    float32 [B].
  """
  p = jax.nn.softmax(p_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(p * log_q, axis=-1)


def jensen_shannon_divergence(p_logits: jax.Array,
                              q_logits: jax.Array) -> jax.Array:
  """KL(p || m) / 2 + KL(q || m) / 2 per row, m = (p + q) / 2, in nats.

  Args:
    p_logits, q_logits: float [B, D].

  Returns:
    float32 [B], in [0, log 2].
  """
  log_p = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  log_q = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
  return 0.5 * (jnp.sum(jnp.exp(log_p) * (log_p - log_m), axis=-1) +
                jnp.sum(jnp.exp(log_q) * (log_q - log_m), axis=-1))


_DIVERGENCE_FNS = {CROSS_ENTROPY: cross_entropy_divergence,
                   JENSEN_SHANNON: jensen_shannon_divergence}


def _compared(layer: str, logits: jax.Array,
              activations: Mapping[str, jax.Array]) -> jax.Array:
  """The values the divergence compares, [2B, D]."""
  if layer == LOGITS:
    return logits
  if layer not in activations:
    raise ValueError(
        f"WILD's layer {layer!r} is not an activation of the model; use "
        f"'logits' or one of {sorted(activations)}.")
  values = activations[layer]
  return values.reshape(values.shape[0], -1)


def wild_loss(logits: jax.Array, batch: Mapping[str, jax.Array],
              activations: Mapping[str, jax.Array], *, weight: float,
              divergence: str, layer: str) -> jax.Array:
  """WILD's loss on a batch of B clean rows followed by their B erased
  copies: CE(clean) + CE(erased) + weight * mean D(clean, erased).

  Args:
    logits: float32 [2B, K].
    batch: ``"label"`` int [2B] (or soft [2B, K]), the two halves equal.
    activations: the model's sown activations, [2B, ...] each.
    weight: lambda.
    divergence: ``"ce"`` or ``"js"``.
    layer: ``"logits"`` or an activation's name.

  Returns:
    The scalar loss.
  """
  half = logits.shape[0] // 2
  labels = batch["label"]
  clean_ce = jnp.mean(losses.cross_entropy(logits[:half], labels[:half]))
  erased_ce = jnp.mean(losses.cross_entropy(logits[half:], labels[half:]))
  values = _compared(layer, logits, activations)
  gap = _DIVERGENCE_FNS[divergence](values[:half], values[half:])
  return clean_ce + erased_ce + weight * jnp.mean(gap)


def erased_pairs(settings: WildConfig):
  """The ``extend`` step of WILD's batches: [x; e(x)] with labels [y; y].

  Returns:
    ``extend(batch, key)``: float images [B, H, W, C] -> [2B, H, W, C], the
    erased copies after the originals, and every other entry repeated.
  """

  def extend(batch: dict[str, jax.Array],
             key: jax.Array) -> dict[str, jax.Array]:
    images = batch["image"]
    pairs = {name: jnp.concatenate([value, value])
             for name, value in batch.items()}
    pairs["image"] = jnp.concatenate([images, settings.erase(images, key)])
    return pairs

  return extend


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: WildConfig = WildConfig(), *,
           workdir: str | None = None, stream: int = 0,
           on_epoch_end: Callable[[int, TrainState], Any] | None = None
           ) -> recipe.TrainedModel:
  """Runs WILD on ``model`` with the clean data ``clean``.

  Each step draws ``config.train.batch_size`` clean images, augments them
  with ``config.train.augment`` and adds their erased copies, so the step
  sees twice that many rows.

  Args:
    config: the model's training config (``configs/train.py`` fields).
    model: the suspect (watermarked) model.
    clean: the defender's clean data (WILD: about 10% of the training set).
    settings: WILD's settings.
    workdir: checkpoint folder (a rerun resumes); None: no checkpoints.
    stream: the engine's key stream (data order, erasing).
    on_epoch_end: called as ``on_epoch_end(epoch, state)`` after each
      epoch (for curves over epochs: ``dataclasses.replace(model,
      state=state)`` is the model at that epoch, to be measured during the
      call: the next step reuses the state's buffers).

  Returns:
    The repaired model (same class and interface).
  """
  repair_engine.check_clean_data(model, clean)
  config = repair_engine.repair_recipe(config, settings.learning_rate,
                                       settings.num_epochs, settings.schedule)
  augment = recipe.input_transform_from_config(config.train.augment)
  return repair_engine.train_repair(
      config, model, clean, average_epochs=settings.average_epochs,
      workdir=workdir, stream=stream,
      loss_fn=functools.partial(wild_loss, weight=settings.weight,
                                divergence=settings.divergence,
                                layer=settings.layer),
      input_transform=repair_engine.no_transform,
      batch_fn=repair_engine.augmenting_batch_fn(augment,
                                                 erased_pairs(settings)),
      on_epoch_end=on_epoch_end)
