"""NAD: neural attention distillation (Li et al., ICLR 2021).

A teacher is the suspect model fine-tuned on the defender's clean data
(all layers); the student, initialised as the suspect model, is then
trained on the same data with

    L = CE(f_S(x), y) + sum_k beta_k * L_AT(F_T^k(x), F_S^k(x))

over named blocks k. The attention map of an activation F [B, H, W, C] is
A(F) = sum_c |F_c|^p over channels, flattened to [B, H W] and divided by
its l2 norm per image (p = 2); L_AT is the mean squared difference of the
teacher's and the student's maps, as in the authors' implementation, for
which the beta values (500 and 1000 for a network's earlier and later
blocks) are set. The teacher's maps are computed in the engine's
``batch_fn`` on the very (augmented) images the student sees.

Defaults (:class:`NadConfig`): teacher fine-tuned 10 epochs at learning
rate 0.01, student trained 20 epochs at 0.01 (constant rates), attention
on ``block1`` (beta 500) and ``block2`` (beta 1000), p = 2.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import repair_engine
from jaxwm.models import common as model_common
from jaxwm.train import losses
from jaxwm.train import recipe

# The batch entry holding the teacher's attention map of block ``name``.
TEACHER_PREFIX = "teacher_attention/"
# Added to the attention map's norm, as in the authors' implementation.
NORM_EPSILON = 1e-6


@dataclasses.dataclass(frozen=True)
class NadConfig:
  """NAD's settings.

  Attributes:
    betas: (block name, beta) pairs: the blocks distilled and their weights.
    power: p of the attention map.
    teacher: the teacher's fine-tuning (all layers).
    learning_rate: the student's constant learning rate.
    num_epochs: the student's epochs.
  """

  betas: tuple[tuple[str, float], ...] = (("block1", 500.0),
                                          ("block2", 1000.0))
  power: float = 2.0
  teacher: fine_tuning.FineTuneConfig = fine_tuning.FineTuneConfig(
      layers=fine_tuning.ALL, learning_rate=0.01, num_epochs=10)
  learning_rate: float = 0.01
  num_epochs: int = 20

  def __post_init__(self):
    betas = tuple((str(name), float(beta)) for name, beta in self.betas)
    if not betas or any(beta < 0 for _, beta in betas):
      raise ValueError(f"betas must be non-empty (block, beta >= 0) pairs, "
                       f"got {self.betas}.")
    if not self.power > 0:
      raise ValueError(f"power must be > 0, got {self.power}.")
    object.__setattr__(self, "betas", betas)
    repair_engine.check_schedule(self.learning_rate, self.num_epochs)


def attention_map(activation: jax.Array, power: float) -> jax.Array:
  """A(F) = sum_c |F_c|^p, flattened and l2-normalised per image.

  Args:
    activation: float [B, H, W, C].
    power: p.

  Returns:
    float32 [B, H * W], each row of l2 norm 1 (up to NORM_EPSILON).
  """
  if activation.ndim != 4:
    raise ValueError(
        f"attention maps need a [B, H, W, C] activation, got shape "
        f"{activation.shape}; distil convolutional blocks, not 'features'.")
  energy = jnp.sum(jnp.abs(activation.astype(jnp.float32))**power, axis=-1)
  energy = energy.reshape(energy.shape[0], -1)
  norm = jnp.linalg.norm(energy, axis=-1, keepdims=True)
  return energy / (norm + NORM_EPSILON)


def attention_loss(student: jax.Array, teacher_map: jax.Array,
                   power: float) -> jax.Array:
  """L_AT: mean over images and positions of (A(F_S) - A_T)^2.

  Args:
    student: the student's activation, float [B, H, W, C].
    teacher_map: the teacher's attention map, float [B, H * W].
    power: p.
  """
  return jnp.mean((attention_map(student, power) - teacher_map)**2)


def nad_loss(logits: jax.Array, batch: Mapping[str, jax.Array],
             activations: Mapping[str, jax.Array], *,
             betas: tuple[tuple[str, float], ...],
             power: float) -> jax.Array:
  """CE + sum_k beta_k L_AT on a batch holding the teacher's maps
  (``batch[TEACHER_PREFIX + name]``, float [B, H * W])."""
  total = jnp.mean(losses.cross_entropy(logits, batch["label"]))
  for name, beta in betas:
    if name not in activations:
      raise ValueError(
          f"NAD's block {name!r} is not an activation of the model; use "
          f"some of {sorted(activations)}.")
    total += beta * attention_loss(activations[name],
                                   batch[TEACHER_PREFIX + name], power)
  return total


def teacher_attention(teacher: recipe.TrainedModel,
                      settings: NadConfig):
  """The ``extend`` step adding the teacher's attention maps to a batch."""
  variables = teacher.variables

  def extend(batch: dict[str, jax.Array],
             key: jax.Array) -> dict[str, jax.Array]:
    del key
    _, activations, _ = model_common.apply_with_features(
        teacher.model, variables, batch["image"])
    return {**batch, **{
        TEACHER_PREFIX + name: attention_map(
            jax.lax.stop_gradient(activations[name]), settings.power)
        for name, _ in settings.betas}}

  return extend


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: NadConfig = NadConfig(), *,
           workdir: str | None = None,
           stream: int = 0) -> recipe.TrainedModel:
  """Runs NAD on ``model`` with the clean data ``clean``.

  Args:
    config: the model's training config (``configs/train.py`` fields).
    model: the suspect model.
    clean: the defender's clean data.
    settings: NAD's settings.
    workdir: checkpoint folder; the teacher's run is in ``workdir/teacher``
      and the student's in ``workdir/student``. None: no checkpoints.
    stream: the engine's key stream of both runs.

  Returns:
    The student (same class and interface as ``model``).
  """
  teacher = fine_tuning.repair(
      config, model, clean, settings.teacher, stream=stream,
      workdir=None if workdir is None else os.path.join(workdir, "teacher"))
  config = repair_engine.repair_recipe(config, settings.learning_rate,
                                       settings.num_epochs)
  augment = recipe.input_transform_from_config(config.train.augment)
  return recipe.train_model(
      config, clean, stream=stream, init_variables=model.variables,
      workdir=None if workdir is None else os.path.join(workdir, "student"),
      loss_fn=functools.partial(nad_loss, betas=settings.betas,
                                power=settings.power),
      input_transform=repair_engine.no_transform,
      batch_fn=repair_engine.augmenting_batch_fn(
          augment, teacher_attention(teacher, settings)))
