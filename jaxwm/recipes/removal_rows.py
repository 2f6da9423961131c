"""The rows of the removal matrix: each watermarked model and how its
watermark is measured.

:func:`build_row` trains (or reuses from ``workdir``) the model of one row
of ``configs/removal.py`` with the recipe of the launcher that owns it, so
that a shared workdir shares the models:

* dataset watermarks (BadNets, UBW-P): :func:`jaxwm.recipes.
  dataset_watermark.train_marked`; UBW-C: the crafted poison and victim of
  :mod:`jaxwm.recipes.craft_poison`. Success is ASR-A on the triggered test
  images of the source classes, verification the paired t-test of the
  owner's key (UBW paper, Section 4) on the ``malicious`` suspect;
* trigger-set watermarks (Adi et al.; content, noise and unrelated of Zhang
  et al.): the trigger set embedded by :func:`jaxwm.watermark.embedding.
  mark` (FROMSCRATCH); success is the watermark accuracy on the trigger
  set, verification the exact binomial test of that agreement against
  chance 1/K (:func:`jaxwm.watermark.adi.decide_agreement`);
* ``benign``: the training recipe alone, no watermark.

Every cell of a row (:meth:`Row.measure`) is ``benign_accuracy``,
``watermark_success``, ``success_metric`` (``"asr_a"`` or
``"watermark_accuracy"``) and ``verification``: ``test`` (``"paired_t"``
or ``"binomial"``), ``p_value``, ``log10_p_value``, ``alpha`` and
``decision`` (``reject_h0``: ownership verified), or ``{"error": why}``
where the test cannot be run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np
from absl import logging

from jaxwm.config_checks.removal import (BENIGN, CRAFTED_ROWS, DATASET_ROWS,
                                         MODEL_ROWS, ROWS, TRIGGER_ROWS)
from jaxwm.data.dataset import Dataset
from jaxwm.fingerprint import value_digest
from jaxwm.poison import methods
from jaxwm.poison.ownership import eligible_indices, verify_dataset_ownership
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.recipes import craft_poison
from jaxwm.recipes import dataset_watermark
from jaxwm.recipes import model_watermark
from jaxwm.recipes import scenarios
from jaxwm.recipes.common import model_dir, watermark_metrics
from jaxwm.train import recipe
from jaxwm.verify import TooFewCorrectError
from jaxwm.verify.levels import decision
from jaxwm.watermark import adi
from jaxwm.watermark import embedding
from jaxwm.watermark import trigger_watermarks

# The engine's key stream of a trigger-set watermarked model.
MARKED_STREAM = 1
TRIGGER_KEY_FILE = "trigger_key"
PAIRED_T, BINOMIAL = "paired_t", "binomial"


@dataclasses.dataclass(frozen=True)
class Row:
  """A (possibly) watermarked model and the measurement of its watermark.

  Attributes:
    name: the row (``configs/removal.py``'s ``ROWS``).
    config: the model's training config (its recipe for the repairs).
    model: the trained model.
    train: the training set as the model was trained on (poisons included).
    clean: the same images before any watermark, with their true labels
      (the defender's clean data is drawn from it).
    test: the clean test set.
    folder: the model's checkpoint folder (named by its fingerprint).
    verify: ``(model) -> (success, verification entry)``; None for the
      benign row.
    success_metric: ``"asr_a"``, ``"watermark_accuracy"`` or None.
    key: a dataset watermark's key (for the detectors), else None.
    eligible: int [E], the test images a dataset watermark acts on.
  """

  name: str
  config: Any
  model: recipe.TrainedModel
  train: Dataset
  clean: Dataset
  test: Dataset
  folder: str
  verify: Callable[[recipe.TrainedModel], tuple[Any, dict[str, Any]]] | None
  success_metric: str | None = None
  key: WatermarkKey | None = None
  eligible: np.ndarray | None = None

  @property
  def watermarked(self) -> bool:
    return self.verify is not None

  def measure(self, model: recipe.TrainedModel) -> dict[str, Any]:
    """One cell of the matrix for ``model`` (module docstring)."""
    cell = {"benign_accuracy": model.evaluate(self.test)["accuracy"]}
    if self.verify is not None:
      success, verification = self.verify(model)
      cell.update(watermark_success=success,
                  success_metric=self.success_metric,
                  verification=verification)
    return cell


def _binomial_entry(result: adi.VerificationResult) -> dict[str, Any]:
  return {"test": BINOMIAL, "p_value": result.p_value,
          "log10_p_value": result.log10_p_value, "alpha": result.alpha,
          "decision": decision(result.accepted_binomial),
          "eps": result.eps, "matches": result.matches,
          "trials": result.trials}


def _dataset_verify(config, key: WatermarkKey, test: Dataset):
  """A dataset watermark's ``Row.verify``: ASR-A on the source classes and
  the paired t-test on ``m`` of their triggered test images."""
  check = config.verify
  source_classes = check.get("source_classes")
  source_classes = None if source_classes is None else tuple(source_classes)

  def verify(model: recipe.TrainedModel):
    rates = watermark_metrics(model.predict_proba, key, test, source_classes)
    try:
      result = verify_dataset_ownership(
          model.predict_proba, key, test, m=check.m, tau=check.tau,
          seed=check.seed, source_classes=source_classes)
    except TooFewCorrectError as error:
      result = scenarios.Unverified(str(error))
    entry = scenarios.result_entry(result, check.alpha)
    if "error" not in entry:
      entry = {"test": PAIRED_T, **entry}
    return rates["asr_a"], entry

  return verify, eligible_indices(key, test.labels, source_classes)


def _dataset_row(config, workdir: str) -> Row:
  train, test = recipe.load_datasets(config)
  watermark = config.watermark.to_dict()
  model, key, _ = dataset_watermark.train_marked(
      config, train, watermark, "watermarked", workdir, surrogate=None)
  # The marked set as the model was trained on (the draw is seeded).
  marked, _ = methods.mark_dataset(
      train, watermark, dataset_watermark.watermark_rng(config,
                                                        "watermarked"))
  verify, eligible = _dataset_verify(config, key, test)
  return Row(config.row, config, model, marked, train, test,
             dataset_watermark.marked_model_dir(workdir, config, watermark,
                                                "watermarked"),
             verify, "asr_a", key, eligible)


def _crafted_row(config, workdir: str) -> Row:
  crafted = craft_poison.craft_poison(config, workdir)
  victims = craft_poison.victim_config(config)
  folder = craft_poison.victim_dir(crafted.folder, "victim", victims)
  model = craft_poison.train_victim(victims, crafted.poisoned, folder)
  verify, eligible = _dataset_verify(config, crafted.key, crafted.test)
  return Row(config.row, victims, model, crafted.poisoned, crafted.train,
             crafted.test, folder, verify, "asr_a", crafted.key, eligible)


def _trigger_key(config, workdir: str,
                 train: Dataset) -> trigger_watermarks.TriggerWatermarkKey:
  """The content, noise or unrelated key, drawn and saved on the first run
  in a folder named by its settings (a secret draw when
  ``watermark.trigger_seed`` is None, as Adi's keys)."""
  wm = config.watermark
  folder = os.path.join(workdir, f"{wm.kind}_key-" + value_digest(
      [wm.to_dict(), train.num_classes, list(train.image_shape)]))
  prefix = os.path.join(folder, TRIGGER_KEY_FILE)
  if os.path.exists(prefix + ".json"):
    return trigger_watermarks.TriggerWatermarkKey.load(prefix)
  target, n, seed = wm.target_label, wm.num_triggers, wm.trigger_seed
  if wm.kind == trigger_watermarks.UNRELATED:
    key = trigger_watermarks.unrelated_watermark(
        trigger_watermarks.digits_like(train.image_shape), target,
        train.num_classes, n, seed=seed)
  elif wm.kind == trigger_watermarks.CONTENT:
    key = trigger_watermarks.content_watermark(train, target, n, wm.text,
                                               seed=seed)
  else:
    key = trigger_watermarks.noise_watermark(train, target, n, wm.noise_std,
                                             seed=seed)
  os.makedirs(folder, exist_ok=True)
  digest = key.save(prefix)
  logging.info("%s key saved in %s (manifest SHA-256 %s)", wm.kind, folder,
               digest)
  return key


def _trigger_set_row(config, workdir: str) -> Row:
  """Adi et al.'s or a content, noise or unrelated trigger set."""
  train, test = recipe.load_datasets(config)
  wm = config.watermark
  if config.row in MODEL_ROWS:
    keys = model_watermark.saved_keys(config, workdir, "owner",
                                      wm.num_triggers, train.num_classes,
                                      train.image_shape)
    marking_key, parts = keys[0], (keys[1].digest(),)

    def decide(model):
      return adi.verify(*keys, model.predict_proba, alpha=wm.alpha,
                        eps=wm.eps)
  else:
    marking_key = _trigger_key(config, workdir, train)
    parts = (value_digest(marking_key),)

    def decide(model):
      return adi.decide_agreement(marking_key.triggers, model.predict_proba,
                                  train.num_classes, alpha=wm.alpha,
                                  eps=wm.eps)
  folder = model_dir(workdir, f"{config.row}_watermarked", config,
                     wm.triggers_per_batch, *parts)
  model = embedding.mark(config, train, marking_key, embedding.FROMSCRATCH,
                         workdir=folder, stream=MARKED_STREAM,
                         k=wm.triggers_per_batch)

  def verify(suspect):
    result = decide(suspect)
    return result.agreement, _binomial_entry(result)

  return Row(config.row, config, model, train, train, test, folder, verify,
             "watermark_accuracy")


def _benign_row(config, workdir: str) -> Row:
  train, test = recipe.load_datasets(config)
  folder = model_dir(workdir, "benign", config)
  model = recipe.train_model(config, train, workdir=folder,
                             stream=dataset_watermark.STREAMS["benign"])
  return Row(config.row, config, model, train, train, test, folder, None)


def build_row(config, workdir: str) -> Row:
  """The model of row ``config.row``, trained or reused from ``workdir``."""
  row = config.row
  if row in DATASET_ROWS:
    return _dataset_row(config, workdir)
  if row in CRAFTED_ROWS:
    return _crafted_row(config, workdir)
  if row in MODEL_ROWS + TRIGGER_ROWS:
    return _trigger_set_row(config, workdir)
  if row == BENIGN:
    return _benign_row(config, workdir)
  raise ValueError(f"row {row!r} must be one of "
                   f"{', '.join(ROWS)}.")

