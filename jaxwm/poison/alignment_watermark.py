"""Clean-label dataset watermarks crafted by gradient alignment.

UBW-C (UBW paper, Section 3.4 and Appendix B) and its targeted baseline
Sleeper Agent share one recipe; :mod:`jaxwm.poison.ubw_c` and
:mod:`jaxwm.poison.sleeper_agent` each define a :class:`Method`, what
differs (the target loss, the labels it uses, which samples may be
perturbed), and :func:`mark` does the rest:

* the inference trigger G_i is a visible BadNets patch (Appendix B);
* the target set is the training images of the source class with G_i
  applied (Appendix B, detail 2: one source class, class 0 by default), or
  with G_i's patch at a random place in each (``craft_patch_positions``);
* the ``poison_rate`` share of the training set, chosen among the method's
  candidates by the largest gradient norms under the surrogate (detail 1),
  gets invisible additive perturbations G_t(x) = x + delta, |delta| <= eps,
  crafted so their training gradient aligns with the target gradient
  (Eq. 8), with labels unchanged;
* the upper and lower levels alternate: every ``retrain_every`` crafting
  steps the surrogate is retrained from scratch on the current poisoned set
  (Eq. 11).

The owner's :class:`~jaxwm.poison.watermark_key.WatermarkKey` records the
inference trigger, the source class, the (optional) target label and the
perturbed indices, so :func:`jaxwm.poison.verify_dataset_ownership` tests
suspects exactly as for the poisoned-label watermarks.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from jaxwm import alignment
from jaxwm.data.dataset import Dataset
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey

CRAFT_PATCH_POSITIONS = ("fixed", "random")


@dataclasses.dataclass(frozen=True)
class AlignmentWatermarkConfig:
  """Settings of UBW-C and Sleeper Agent (defaults: UBW paper, App. C.1).

  Attributes:
    poison_rate: gamma, the share of the training set perturbed.
    source_class: the class whose triggered images form the target set.
    target_label: y_t of Sleeper Agent; unused by UBW-C.
    lam: lambda of UBW-C's target (Eq. 9); unused by Sleeper Agent.
    selection: how the perturbed samples are chosen
      (:data:`jaxwm.alignment.selection.SELECTIONS`).
    selection_batch_size: per-example gradients per compiled batch.
    patch_size: side of the BadNets inference trigger; None scales 3 px at
      32x32 with the image.
    patch_position: (row, col) of the patch; None for the bottom-right.
    patch_pattern: ``"checkerboard"`` or ``"white"``.
    craft_patch_positions: where the patch sits on the target set's images
      while crafting: ``"fixed"`` (where G_i puts it) or ``"random"`` (a
      uniform position per image, Sleeper Agent's location-invariant
      trigger). Verification always uses G_i.
  """

  poison_rate: float = 0.1
  source_class: int = 0
  target_label: int = 1
  lam: float = 2.0
  selection: str = "gradient_norm"
  selection_batch_size: int = 64
  patch_size: int | None = None
  patch_position: tuple[int, int] | None = None
  patch_pattern: str = "checkerboard"
  craft_patch_positions: str = "fixed"

  def __post_init__(self):
    if self.craft_patch_positions not in CRAFT_PATCH_POSITIONS:
      raise ValueError(
          f"craft_patch_positions={self.craft_patch_positions!r}; use one of "
          f"{', '.join(CRAFT_PATCH_POSITIONS)}.")
    if not 0.0 < self.poison_rate <= 1.0:
      raise ValueError(f"poison_rate={self.poison_rate} must be in (0, 1].")
    if self.lam < 0:
      raise ValueError(f"lam={self.lam} must be >= 0.")
    if self.patch_position is not None:
      object.__setattr__(self, "patch_position", tuple(self.patch_position))


@dataclasses.dataclass(frozen=True)
class Method:
  """What one clean-label alignment watermark chooses.

  Attributes:
    name: the watermark's name, recorded in its key.
    target_loss: config -> the per-example target loss on triggered
      source images.
    target_label: config -> the label the target loss and the key use
      (targeted), or None for the true labels (untargeted).
    candidate_classes: config -> the classes whose samples may be
      perturbed, or None for all.
  """

  name: str
  target_loss: Callable[[AlignmentWatermarkConfig], alignment.PerExampleLoss]
  target_label: Callable[[AlignmentWatermarkConfig], int | None]
  candidate_classes: Callable[[AlignmentWatermarkConfig],
                              Sequence[int] | None]


def inference_trigger(config: AlignmentWatermarkConfig,
                      image_shape: Sequence[int]) -> triggers.BlendTrigger:
  """G_i, the visible BadNets patch used at verification time."""
  return triggers.badnets_trigger(image_shape, size=config.patch_size,
                                  position=config.patch_position,
                                  pattern=config.patch_pattern)


def triggered_target_images(config: AlignmentWatermarkConfig,
                            trigger: triggers.BlendTrigger,
                            images: np.ndarray, key: jax.Array) -> np.ndarray:
  """The target set: source images uint8 [N, H, W, C] with the patch.

  With ``config.craft_patch_positions == "random"`` each image's patch is
  placed uniformly at random (drawn from ``key``), else where G_i puts it.
  """
  if config.craft_patch_positions == "fixed":
    return triggers.apply_uint8(trigger, images)
  patch_h, patch_w = trigger.params["size"]
  height, width = trigger.image_shape[:2]
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
  positions = np.stack([rng.integers(0, height - patch_h + 1, len(images)),
                        rng.integers(0, width - patch_w + 1, len(images))], 1)
  return triggers.stamp_patch_at(trigger, images, positions)


def mark(dataset: Dataset, method: Method, config: AlignmentWatermarkConfig,
         craft_config: alignment.CraftConfig, key: jax.Array, *, model,
         variables: Any,
         retrain_surrogate: alignment.RetrainSurrogate | None = None,
         workdir: str | None = None, mesh: Mesh | None = None
         ) -> tuple[Dataset, WatermarkKey, float]:
  """Watermarks ``dataset`` with clean-label alignment poisons.

  Args:
    dataset: the benign training set D.
    method: :data:`jaxwm.poison.ubw_c.METHOD` or
      :data:`jaxwm.poison.sleeper_agent.METHOD`.
    config: the watermark's settings.
    craft_config: the crafting loop's settings.
    key: jax.random key of the watermark (selection, initial perturbations,
      augmentation).
    model, variables: the surrogate trained on D.
    retrain_surrogate: retrains a surrogate from scratch on a poisoned set
      (needed when ``craft_config.retrain_every`` > 0).
    workdir: crafting checkpoints (resumable).
    mesh: device mesh; default all devices.

  Returns:
    (the released dataset D_p, the owner's WatermarkKey, the crafting
    objective of the kept trial).
  """
  source = int(config.source_class)
  target_label = method.target_label(config)
  candidate_classes = method.candidate_classes(config)
  for name, value in (("source_class", source), ("target_label",
                                                  target_label)):
    if value is not None and not 0 <= value < dataset.num_classes:
      raise ValueError(f"{name} {value} is outside [0, "
                       f"{dataset.num_classes}); pick a class of the dataset.")
  if target_label is not None and target_label == source:
    raise ValueError(f"target_label {target_label} equals the source class; "
                     "pick a different target.")
  trigger = inference_trigger(config, dataset.image_shape)
  source_rows = np.flatnonzero(dataset.labels == source)
  if source_rows.size == 0:
    raise ValueError(f"the training set has no sample of source class "
                     f"{source}.")
  # A key of its own, so the fixed-position recipe draws what it always drew.
  target_images = triggered_target_images(
      config, trigger, dataset.images[source_rows], jax.random.fold_in(key, 1))
  target_labels = (dataset.labels[source_rows] if target_label is None else
                   np.full(source_rows.size, target_label, np.int32))
  target = alignment.make_target(model, target_images, target_labels,
                                 method.target_loss(config),
                                 batch_size=craft_config.batch_size, mesh=mesh)
  pool = alignment.candidates(dataset, candidate_classes)
  count = int(round(config.poison_rate * len(dataset)))
  if count > pool.size:
    logging.warning("%s: poison_rate %.3f asks for %d samples but only %d are "
                    "candidates; perturbing all of them.", method.name,
                    config.poison_rate, count, pool.size)
    count = pool.size
  select_key, craft_key = jax.random.split(key)
  indices = alignment.select_samples(
      dataset, by=config.selection, classes=candidate_classes, count=count,
      key=select_key, model=model, variables=variables,
      batch_size=config.selection_batch_size, mesh=mesh)

  result = alignment.craft(
      model, variables, dataset.images[indices], dataset.labels[indices],
      target, craft_config, craft_key,
      workdir=None if workdir is None else os.path.join(workdir, "crafting"),
      retrain=alignment.retrain_on_dataset(dataset, indices,
                                          retrain_surrogate),
      mesh=mesh)
  images = dataset.images.copy()
  images[indices] = alignment.quantize(images[indices], result.delta,
                                      craft_config.epsilon)
  watermark_key = WatermarkKey(
      method=method.name, trigger=trigger, target_label=target_label,
      num_classes=dataset.num_classes, source_classes=(source,),
      poisoned_indices=indices, num_samples=len(dataset),
      seed=np.asarray(jax.random.key_data(key), np.uint32))
  return dataset.replace(images=images), watermark_key, result.loss
