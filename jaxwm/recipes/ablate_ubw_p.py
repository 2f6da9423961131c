"""UBW-P dispersibility against training length, model and label draw.

:func:`run_ablation` is the whole ``experiments/ablate_ubw_p.py`` job: for
each arm of ``config.ablation`` (a CNN width and a way of drawing the random
labels) it trains the UBW-P experiment's watermarked model and measures the
watermark after each epoch count (:func:`dispersibility_curve`).

UBW-P (UBW paper, Section 3.3) gives each poisoned sample a random label.
A model that has not yet fitted these labels can only learn that a
triggered image's label is unpredictable: its prediction on G(x) is close to
the empirical distribution of the random labels, and the argmax falls on
one class for most images (the class that drew the most random labels, or
the model's favourite class for ambiguous inputs), so D_p is low. Once the
model fits (memorises) the random labels of the poisoned training samples,
triggered test images inherit the labels of the poisoned samples they
resemble, which are random, and D_p approaches ln K. The paper trains
ResNet-18 for 200 epochs with only horizontal flips (Appendix C.1), long
enough to fit them.

:func:`dispersibility_curve` measures this: it trains one model on one
watermarked training set and, after each of the given epoch counts, reports
D_p, ASR-A, benign accuracy and ``poison_fit``, the share of poisoned
training samples predicted as their random label. The recipe's learning
rate must not depend on the total number of epochs (a ``"step"`` or
``"constant"`` schedule), so that resuming the same run to a later epoch
count is the same as training that long in one go. Each measured point is
kept in the run's folder (:data:`CURVE_FILE`) with the identity of the run
and of the data it was measured on: a rerun of the same run reads the
points it has and trains on only for the new ones (a checkpoint cannot be
taken back to an earlier epoch); a curve kept for another run raises
:class:`jaxwm.identity.StaleRunError`.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import numpy as np
from absl import logging

from jaxwm import identity
from jaxwm.data.dataset import Dataset
from jaxwm.fingerprint import value_digest
from jaxwm.poison.methods import mark_dataset
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.recipes import dataset_watermark
from jaxwm.recipes.common import watermark_metrics
from jaxwm.train import recipe

CURVE_FILE = "dispersibility_curve.json"


def poison_fit(predict, marked: Dataset, key: WatermarkKey) -> float:
  """Share of the poisoned training samples predicted as their training
  label (for UBW-P, their random label): how far they are memorised.

  Args:
    predict: images [B, H, W, C] -> labels int [B] (``TrainedModel.predict``).
    marked: the watermarked training set.
    key: its WatermarkKey.
  """
  poisoned = key.poisoned_indices
  return float(np.mean(predict(marked.images[poisoned]) ==
                       marked.labels[poisoned]))


def dispersibility_curve(config, marked: Dataset, key: WatermarkKey,
                         test: Dataset, epochs: Sequence[int], workdir: str,
                         stream: int = dataset_watermark.STREAMS["watermarked"]
                         ) -> list[dict[str, Any]]:
  """Trains on ``marked`` and measures the watermark after each epoch count.

  Args:
    config: a config with the fields of ``configs/train.py``; its
      ``train.schedule`` must be one of
      :data:`jaxwm.train.recipe.RESUMABLE_SCHEDULES`.
    marked: the watermarked training set.
    key: its WatermarkKey.
    test: the test set.
    epochs: increasing epoch counts at which to measure.
    workdir: the run's checkpoint folder (each count resumes the last).
    stream: the engine's key stream.

  Returns:
    One dict per epoch count: ``epochs``, ``poison_fit`` and the
    :func:`jaxwm.recipes.common.watermark_metrics`.
  """
  if config.train.schedule not in recipe.RESUMABLE_SCHEDULES:
    raise ValueError(
        f"schedule {config.train.schedule!r} depends on the number of "
        f"epochs; use one of {recipe.RESUMABLE_SCHEDULES} for a curve over "
        "epochs.")
  epochs = [int(e) for e in epochs]
  if not epochs or epochs[0] < 1 or np.any(np.diff(epochs) <= 0):
    raise ValueError(f"epochs {epochs} must be increasing positive counts.")
  path = os.path.join(workdir, CURVE_FILE)
  record = {**recipe.measurement_identity(config, stream, marked=marked,
                                          test=test),
            "key": value_digest(key)}
  kept = identity.read_json(path, record, what="the dispersibility curve")
  measured = {int(point["epochs"]): point for point in kept or ()}
  points = []
  for count in epochs:
    if count not in measured:
      if measured and count < max(measured):
        raise ValueError(
            f"{workdir} has trained past {count} epochs without measuring "
            "them; measure earlier counts in a new workdir.")
      run_config = copy.deepcopy(config)
      run_config.train.num_epochs = count
      model = recipe.train_model(run_config, marked, workdir=workdir,
                                 stream=stream)
      measured[count] = {
          "epochs": count,
          "poison_fit": poison_fit(model.predict, marked, key),
          **watermark_metrics(model.predict_proba, key, test)}
      identity.write_json(path, record, sorted(measured.values(),
                                               key=lambda p: p["epochs"]))
      logging.info("%s", measured[count])
    points.append(measured[count])
  return points


def arm_config(config, arm: dict[str, Any]):
  """The experiment's config with the arm's CNN width and label draw."""
  result = copy.deepcopy(config)
  result.unlock()
  result.model_kwargs.width = arm["width"]
  result.watermark.label_draw = arm["label_draw"]
  return result


def run_ablation(config, workdir: str,
                 metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """Every arm's curve, into ``metrics["curves"]`` arm by arm (``metrics``
  default a new dict); the launcher's ``outcome`` mapping.

  An arm's model is the experiment's watermarked model for its config and
  lives in the same folder, so ``experiments/dataset_watermark.py`` with
  the same ``--workdir`` reuses it (and the other way round).
  """
  arms = config.ablation.arms.to_dict()
  only = [name for name in config.ablation.only.split(",") if name]
  unknown = sorted(set(only) - set(arms))
  if unknown:
    raise ValueError(f"ablation.only names unknown arms {unknown}; the arms "
                     f"are {sorted(arms)}.")
  metrics = {} if metrics is None else metrics
  curves = metrics.setdefault("curves", {})
  for name, arm in arms.items():
    if only and name not in only:
      continue
    arm_settings = arm_config(config, arm)
    train, test = recipe.load_datasets(arm_settings)
    watermark = arm_settings.watermark.to_dict()
    marked, key = mark_dataset(
        train, watermark,
        dataset_watermark.watermark_rng(config, "watermarked"))
    logging.info("arm %s: %d training images, %d poisoned", name, len(train),
                 key.poisoned_indices.size)
    curves[name] = dispersibility_curve(
        arm_settings, marked, key, test, config.ablation.epochs,
        dataset_watermark.marked_model_dir(workdir, arm_settings, watermark,
                                           "watermarked"))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
