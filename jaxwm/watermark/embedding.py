"""Mark of Adi et al. (Section 3.1) through the training engine.

Mark(M, mk) trains the model to output the trigger labels T_L on the trigger
images T while it keeps its accuracy on the task. Section 4.1 gives two ways,
both of which put k = 2 randomly chosen triggers into every training batch:

* FROMSCRATCH: train a fresh model on the training data with the triggers
  in every batch, with the usual recipe (``config.train``).
* PRETRAINED: start from a model trained without the triggers
  (``base_variables``) and continue training it the same way. The paper
  does not give this schedule: ``config.train`` holds it (the launcher
  runs the training recipe a second time;
  :func:`jaxwm.steal.finetune.finetune_config` derives a constant-rate
  one).

The batches are mixed on the device by :func:`adi.batch_with_triggers`, which
overwrites the last k rows of each batch (the batch keeps its size, so it
stays divisible over the devices of the mesh). The paper appends the
triggers to batches that its data pipeline has already augmented; likewise
only the training rows here go through ``config.train.augment`` and the
triggers are seen exactly as Verify will query them
(:func:`augment_all_but_triggers`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxwm.data.dataset import Dataset
from jaxwm.train import loop
from jaxwm.train import recipe
from jaxwm.train import step as step_lib
from jaxwm.watermark import adi

FROMSCRATCH = "fromscratch"
PRETRAINED = "pretrained"
MODES = (FROMSCRATCH, PRETRAINED)


def trigger_batch_fn(marking_key,
                     k: int = adi.FROMSCRATCH_TRIGGERS_PER_BATCH
                     ) -> loop.BatchFn:
  """The engine's ``batch_fn`` putting ``k`` triggers into every batch.

  Args:
    marking_key: an :class:`adi.MarkingKey` or a
      :class:`jaxwm.watermark.public.PublicMarkingKey` (its private half).
    k: triggers per batch (Section 4.1: k = 2 worked best).

  Returns:
    ``batch_fn({"image": uint8 [B, H, W, C], "label": int [B]}, key)`` ->
    the batch with its last k rows replaced by distinct random triggers.
  """
  trigger_images, trigger_labels = adi.trigger_arrays(marking_key)

  def batch_fn(batch: dict[str, jax.Array],
               key: jax.Array) -> dict[str, jax.Array]:
    images, labels = adi.batch_with_triggers(batch["image"], batch["label"],
                                             trigger_images, trigger_labels,
                                             key, k)
    return {**batch, "image": images, "label": labels}

  return batch_fn


def augment_all_but_triggers(augment: step_lib.InputTransform,
                             k: int) -> step_lib.InputTransform:
  """``augment`` applied to all rows of a batch but its last ``k``.

  Args:
    augment: the engine's input transform, float [B, H, W, C] and a key ->
      float [B, H, W, C].
    k: the number of trigger rows that :func:`trigger_batch_fn` puts last.

  Returns:
    The transform; a per-row select, so a sharded batch needs no
    communication between devices.
  """

  def transform(images: jax.Array, key: jax.Array) -> jax.Array:
    batch = images.shape[0]
    is_trigger = jnp.arange(batch) >= batch - k
    return jnp.where(is_trigger.reshape((batch,) + (1,) * (images.ndim - 1)),
                     images, augment(images, key))

  return transform


def mark(config, train_data: Dataset, marking_key, mode: str, *,
         workdir: str | None = None,
         base_variables: dict[str, Any] | None = None,
         stream: int = 0,
         k: int = adi.FROMSCRATCH_TRIGGERS_PER_BATCH) -> recipe.TrainedModel:
  """Mark(M, mk): embeds the trigger set of ``marking_key`` into a model.

  Args:
    config: a config with the fields of ``configs/train.py``; ``config.train``
      is the recipe of this training run (for PRETRAINED, the continued
      training's schedule).
    train_data: the owner's training set; its image shape and classes must
      be those of the trigger set.
    marking_key: an :class:`adi.MarkingKey` (or a public marking key).
    mode: ``"fromscratch"`` or ``"pretrained"``.
    workdir: checkpoint folder (a rerun resumes); None: no checkpoints.
    base_variables: PRETRAINED only: the variables of the trained,
      non-marked model.
    stream: the engine's key stream of this model.
    k: triggers per batch.

  Returns:
    The marked model.

  Raises:
    ValueError: an unknown mode, base_variables missing for PRETRAINED or
      given for FROMSCRATCH, or a trigger set that does not fit the data.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
  if (mode == PRETRAINED) != (base_variables is not None):
    raise ValueError(
        f"mode {mode!r} {'needs' if mode == PRETRAINED else 'takes no'} "
        "base_variables; pass the non-marked model's variables for "
        "PRETRAINED and none for FROMSCRATCH.")
  triggers = marking_key.triggers
  if (triggers.image_shape, triggers.num_classes) != (
      train_data.image_shape, train_data.num_classes):
    raise ValueError(
        f"the trigger set has image shape {triggers.image_shape} and "
        f"{triggers.num_classes} classes but the training data "
        f"{train_data.image_shape} and {train_data.num_classes}; generate the "
        "keys with keygen(n, K, image_shape) of the data.")
  augment = recipe.input_transform_from_config(config.train.augment)
  return recipe.train_model(
      config, train_data, workdir=workdir, stream=stream,
      init_variables=base_variables,
      input_transform=augment_all_but_triggers(augment, k),
      batch_fn=trigger_batch_fn(marking_key, k))
