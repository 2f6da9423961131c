"""How model repairs plug into the training engine.

Every repair (:mod:`jaxwm.defenses.fine_tuning`, ``pruning``,
``fine_pruning``, ``wild``, ``nad``, ``mode_connectivity``) trains the
suspect model on the defender's limited clean data with
:func:`jaxwm.train.recipe.train_model`; what differs is the loss function
and the batches. Repairs that need more than one view of each image (WILD's
erased copy, NAD's teacher attention) build those views in the engine's
``batch_fn`` from the augmented images, so the images are augmented there
(:func:`augmenting_batch_fn`) and the step's own input transform is
:func:`no_transform`. Fine-tuning and WILD train through
:func:`train_repair`, which can return the mean of the last epochs'
weights instead of the last epoch's (:mod:`jaxwm.train.weight_average`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.config_checks.core import require_integer
from jaxwm.data.dataset import Dataset
from jaxwm.steal import finetune
from jaxwm.train import loop
from jaxwm.train import recipe
from jaxwm.train import step as step_lib
from jaxwm.train import weight_average

# (batch of augmented float images, key) -> the batch with added views.
ExtendFn = Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]


# The learning-rate schedules a repair may use: a constant rate, a cosine
# decay from the rate to 0 over the repair's epochs, or a step: the rate for
# the first STEP_AT of the epochs, then STEP_GAMMA times it to the end.
CONSTANT = "constant"
COSINE = "cosine"
STEP = "step"
SCHEDULES = (CONSTANT, COSINE, STEP)
STEP_AT = 0.8
STEP_GAMMA = 0.1


def check_schedule(learning_rate: float, num_epochs: int,
                   schedule: str = CONSTANT) -> None:
  """Raises ValueError unless ``learning_rate`` > 0, ``num_epochs`` >= 1
  and ``schedule`` is one of :data:`SCHEDULES`."""
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
  require_integer("num_epochs", num_epochs, 1)
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule must be one of {SCHEDULES}, got "
                     f"{schedule!r}.")


def repair_recipe(config, learning_rate: float, num_epochs: int,
                  schedule: str = CONSTANT):
  """``config`` with a ``train`` recipe of ``num_epochs`` at
  ``learning_rate``: constant, decayed by a cosine to 0, or divided by ten
  for the last fifth of the epochs (``schedule``, one of
  :data:`SCHEDULES`); optimizer, batch size, weight decay and augmentation
  kept."""
  derived = finetune.finetune_config(config, learning_rate=learning_rate,
                                     num_epochs=num_epochs)
  derived.train.schedule = schedule
  if schedule == STEP:
    derived.train.milestones = (STEP_AT * num_epochs,)
    derived.train.gamma = STEP_GAMMA
  return derived


def no_transform(images: jax.Array, key: jax.Array) -> jax.Array:
  """The step's input transform when ``batch_fn`` has augmented already."""
  del key
  return images


def augmenting_batch_fn(augment: step_lib.InputTransform,
                        extend: ExtendFn) -> loop.BatchFn:
  """The engine's ``batch_fn``: augment the batch, then add views to it.

  Args:
    augment: float images [B, H, W, C] in [0, 1] and a key -> augmented
      images (e.g. :func:`jaxwm.train.recipe.input_transform_from_config`).
    extend: (batch with float ``"image"`` [B, H, W, C], key) -> the batch
      the loss function receives.

  Returns:
    ``batch_fn({"image": uint8 or float [B, H, W, C], "label": ...}, key)``.
  """

  def batch_fn(batch: dict[str, jax.Array],
               key: jax.Array) -> dict[str, jax.Array]:
    images = augment(step_lib.to_float_images(batch["image"]),
                     jax.random.fold_in(key, 0))
    return extend({**batch, "image": images}, jax.random.fold_in(key, 1))

  return batch_fn


def fully_connected(params) -> Callable[[tuple[str, ...]], bool]:
  """The ``trainable`` predicate of the fully connected layers of a model.

  A layer is fully connected when its ``kernel`` is a matrix [D_in, D_out]
  (convolution kernels are [h, w, C_in, C_out]): the classifier ``head`` of
  every jaxwm model and the dense layers before it.
  """
  names = set()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = tuple(str(getattr(k, "key", k)) for k in path)
    if keys[-1] == "kernel" and np.ndim(leaf) == 2:
      names.add(keys[:-1])
  if not names:
    raise ValueError("the model has no fully connected layer (no 2-D "
                     "'kernel'); fine-tune all layers instead.")
  return lambda path: tuple(path[:-1]) in names


def check_clean_data(model: recipe.TrainedModel, clean: Dataset) -> None:
  """Raises ValueError unless ``clean`` fits ``model``'s inputs and classes."""
  try:
    logits = model.logits(clean.images[:1])
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"the clean data's images {list(clean.image_shape)} do not fit the "
        f"model ({error}); pass data of the model's task.") from error
  if logits.shape[-1] != clean.num_classes:
    raise ValueError(
        f"the model has {logits.shape[-1]} classes but the clean data "
        f"{clean.num_classes}; pass data of the model's task.")


def with_variables(model: recipe.TrainedModel,
                   variables: dict) -> recipe.TrainedModel:
  """``model`` (same class, predict function and mesh) with other variables
  of the same structure."""
  variables = jax.tree.map(jnp.asarray, dict(variables))
  params = variables.pop("params")
  return dataclasses.replace(model, state=model.state.replace(
      params=params, model_state=variables))


def train_repair(config, model: recipe.TrainedModel, clean: Dataset, *,
                 average_epochs: int = 0, workdir: str | None = None,
                 on_epoch_end: Callable[[int, Any], Any] | None = None,
                 **engine_args) -> recipe.TrainedModel:
  """Trains ``model`` on ``clean`` with the repair recipe ``config``
  (:func:`repair_recipe`), returning the last epoch's model or, with
  ``average_epochs`` = K >= 2, the mean of the variables (weights and
  batch statistics) at the ends of the last K epochs
  (:mod:`jaxwm.train.weight_average`).

  Args:
    config: the repair's training config.
    model: the suspect model (the repair starts from its variables).
    clean: the defender's clean data.
    average_epochs: 0 or 1: the last epoch's model; K: the average of the
      last K.
    workdir: checkpoint folder (a rerun resumes, the average too).
    on_epoch_end: the engine's hook, called with the live (not averaged)
      state.
    **engine_args: further :func:`jaxwm.train.recipe.train_model`
      arguments (``stream``, ``loss_fn``, ``trainable``, ``batch_fn``,
      ``input_transform``).
  """
  if average_epochs < 2:
    return recipe.train_model(config, clean, workdir=workdir,
                              init_variables=model.variables,
                              on_epoch_end=on_epoch_end, **engine_args)
  average = weight_average.EpochAverage(model.variables,
                                        config.train.num_epochs,
                                        average_epochs, workdir)

  def hook(epoch: int, state) -> None:
    average.on_epoch_end(epoch, state)
    if on_epoch_end is not None:
      on_epoch_end(epoch, state)

  try:
    trained = recipe.train_model(config, clean, workdir=workdir,
                                 init_variables=model.variables,
                                 on_epoch_end=hook, **engine_args)
    return with_variables(trained, average.variables())
  finally:
    average.close()
