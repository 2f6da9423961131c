"""The dataset watermark experiment (UBW paper, Sections 5.2-5.3).

:func:`run_experiment` is the whole ``experiments/dataset_watermark.py`` job,
importable from a notebook:

1. train the benign model on the clean training set (also the surrogate of
   the Label-Consistent PGD);
2. mark the training set with the owner's watermark and train the
   watermarked model on it;
3. mark it with a different trigger (``config.independent_trigger``) and
   train the Independent-T model;
4. measure the watermarked model (benign accuracy, ASR-A, ASR-C, D_p, D_s,
   D_c on the triggered test set) and verify the three scenarios of
   :mod:`jaxwm.verify.scenarios` with the owner's key.

Every model is checkpointed under ``workdir`` in a folder named after its
role, dataset, model and seed plus a SHA-256 fingerprint of everything it
depends on (e.g. ``benign_fashion_mnist_cnn_seed0-1a2b...``), so a rerun, or
another watermark run with the same ``workdir``, resumes or reuses it, after
the engine has checked the checkpoint's identity record (the config fields
and the SHA-256 of the training data, :mod:`jaxwm.identity`). The
owner's key is saved beside the watermarked model's checkpoints
(``watermark_key.npz/.json/.manifest.json``) and its manifest digest is
reported.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np
from absl import logging

from jaxwm import identity
from jaxwm import metrics as metrics_lib
from jaxwm import results
from jaxwm.data.dataset import Dataset
from jaxwm.poison import label_consistent
from jaxwm.poison import poisoned_label
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.train import recipe
from jaxwm.verify import scenarios
from jaxwm.verify.dataset_ownership import PredictProba

METHODS = poisoned_label.METHODS + (label_consistent.METHOD,)
# The engine's key streams of the three models, and the watermark keys'.
STREAMS = {"benign": 0, "watermarked": 1, "independent": 2}
WATERMARK_STREAMS = {"watermarked": 1000, "independent": 1001}
KEY_FILE = "watermark_key"


def mark_dataset(dataset: Dataset, watermark: Mapping[str, Any],
                 key: jax.Array,
                 surrogate: recipe.TrainedModel | None = None
                 ) -> tuple[Dataset, WatermarkKey]:
  """Marks ``dataset`` with the watermark ``watermark["method"]`` names.

  Args:
    dataset: the benign training set.
    watermark: the fields of the method's config (``method`` included), as
      a dict or ConfigDict.
    key: jax.random key of the watermark.
    surrogate: the model the Label-Consistent PGD attacks; unused otherwise.

  Returns:
    (marked dataset, WatermarkKey).
  """
  fields = dict(watermark.to_dict() if hasattr(watermark, "to_dict")
                else watermark)
  method = fields.get("method")
  if method not in METHODS:
    raise ValueError(f"unknown watermark method {method!r}; use one of "
                     f"{METHODS}.")
  if method != label_consistent.METHOD:
    return poisoned_label.mark(dataset, fields, key)
  if surrogate is None:
    raise ValueError("the label_consistent watermark needs a surrogate model "
                     "trained on benign data for its PGD; pass surrogate=.")
  del fields["method"]
  return label_consistent.mark(dataset, fields, key, surrogate.model,
                               surrogate.variables)


def eligible_test_indices(key: WatermarkKey, labels: np.ndarray) -> np.ndarray:
  """Test samples the watermark acts on: its source classes, minus the
  target class of a targeted watermark (int64 [N'])."""
  eligible = np.isin(labels, key.source_classes)
  if key.targeted:
    eligible &= labels != key.target_label
  return np.flatnonzero(eligible)


def _rate(compute: Callable[[], Any]) -> float | dict[str, str]:
  """``compute()`` as a float, or ``{"error": why}`` when the rate is over
  an empty set of samples."""
  try:
    return float(compute())
  except metrics_lib.UndefinedMetricError as error:
    return results.not_computed(str(error))


def watermark_metrics(predict_proba: PredictProba, key: WatermarkKey,
                      test_dataset: Dataset) -> dict[str, Any]:
  """Benign accuracy, ASR-A, ASR-C and dispersibility of a suspect model.

  Benign accuracy is measured on the whole test set; the other metrics on
  the triggered versions G(x) of the eligible test images
  (:func:`eligible_test_indices`), as in Section 5.1: D_p (Definition 1)
  from the hard predictions, D_s and D_c (Definition 2) from the
  probabilities. ``top_class_share`` is the largest share of triggered
  images predicted as one class, a plain reading of how targeted the
  model's response is.

  Args:
    predict_proba: float images [B, H, W, C] in [0, 1] -> probabilities
      [B, K] (e.g. ``TrainedModel.predict_proba``).
    key: the watermark's key.
    test_dataset: the test set.

  Returns:
    {"benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
    "top_class_share"}, floats; an attack success rate over no qualifying
    sample (ASR-C of a model that gets no eligible test image right) is
    ``{"error": why}``.
  """
  benign = np.asarray(predict_proba(test_dataset.float_images()))
  eligible = eligible_test_indices(key, test_dataset.labels)
  labels = test_dataset.labels[eligible]
  triggered = np.asarray(predict_proba(
      key.apply_trigger_uint8(test_dataset.images[eligible]).astype(
          np.float32) / 255.0), np.float32)
  triggered_classes = np.argmax(triggered, axis=1)
  counts = np.bincount(triggered_classes, minlength=key.num_classes)
  values = {
      "benign_accuracy": metrics_lib.benign_accuracy(benign,
                                                     test_dataset.labels),
      "d_p": metrics_lib.prediction_dispersibility(
          triggered_classes, labels, key.num_classes),
      "d_s": metrics_lib.sample_dispersibility(triggered),
      "d_c": metrics_lib.class_dispersibility(triggered, labels),
      "top_class_share": counts.max() / max(1, counts.sum()),
  }
  return {
      **{name: float(value) for name, value in values.items()},
      "asr_a": _rate(lambda: metrics_lib.asr_a(triggered, labels,
                                               key.target_label)),
      "asr_c": _rate(lambda: metrics_lib.asr_c(
          triggered, benign[eligible], labels, key.target_label)),
  }


def model_dir(workdir: str, role: str, config, *parts: Any) -> str:
  """``workdir/<role>_<dataset>_<model>_seed<k>-<fingerprint>``.

  The fingerprint (:func:`jaxwm.identity.folder_fingerprint`) covers
  everything the benign model depends on (dataset, data directory, model,
  training fraction, recipe, seed, jaxwm version) and ``parts``.
  """
  dataset = re.sub(r"[^A-Za-z0-9]+", "_", config.dataset).strip("_")
  return os.path.join(
      workdir, f"{role}_{dataset}_{config.model}_seed{config.seed}-"
      f"{identity.folder_fingerprint(config, *parts)}")


def watermark_rng(config, role: str) -> jax.Array:
  """The jax.random key of the ``role`` watermark, from ``config.seed``."""
  return jax.random.fold_in(jax.random.key(config.seed),
                            WATERMARK_STREAMS[role])


def marked_model_dir(workdir: str, config, watermark: Mapping[str, Any],
                     role: str) -> str:
  """The folder of the model trained on the ``role`` watermark's dataset."""
  key_data = np.asarray(jax.random.key_data(watermark_rng(config, role)))
  return model_dir(workdir, f"{watermark['method']}_{role}", config,
                   dict(watermark), key_data)


def _train_marked(config, train: Dataset, watermark: Mapping[str, Any],
                  role: str, workdir: str, surrogate: recipe.TrainedModel
                  ) -> tuple[recipe.TrainedModel, WatermarkKey, str]:
  """Marks ``train``, saves the key and trains a model on the marked set.

  Returns:
    (the trained model, the WatermarkKey, the key's manifest digest).
  """
  marked, watermark_key = mark_dataset(train, watermark,
                                       watermark_rng(config, role), surrogate)
  folder = marked_model_dir(workdir, config, watermark, role)
  os.makedirs(folder, exist_ok=True)
  digest = watermark_key.save(os.path.join(folder, KEY_FILE))
  logging.info("%s: %d of %d training images marked; key saved in %s "
               "(manifest SHA-256 %s)", role,
               watermark_key.poisoned_indices.size, len(train), folder,
               digest)
  model = recipe.train_model(config, marked, workdir=folder,
                             stream=STREAMS[role])
  return model, watermark_key, digest


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/dataset_watermark.py``.
    workdir: where models and keys go (reused across runs and methods).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.

  Returns:
    {"dataset", "model", "metrics"}: the watermarked model's
    ``benign_accuracy``, ``asr_a``, ``asr_c``, ``d_p``, ``d_s``, ``d_c``,
    ``top_class_share``; ``benign_accuracy_no_watermark`` of the benign
    model; ``verification`` (each scenario's test result, or the reason
    it could not be run), ``p_value`` and ``delta_p`` keyed by scenario;
    ``poison_rate`` and ``watermark_key_digest``.
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  logging.info("%s on %d %s training images, %d test images",
               config.watermark.method, len(train), config.dataset, len(test))
  benign = recipe.train_model(config, train,
                              workdir=model_dir(workdir, "benign", config),
                              stream=STREAMS["benign"])
  metrics["benign_accuracy_no_watermark"] = benign.evaluate(test)["accuracy"]
  watermark = config.watermark.to_dict()
  watermarked, key, digest = _train_marked(config, train, watermark,
                                           "watermarked", workdir, benign)
  metrics.update(poison_rate=key.poison_rate, watermark_key_digest=digest)
  metrics.update(watermark_metrics(watermarked.predict_proba, key, test))
  independent_watermark = {**watermark,
                           **config.independent_trigger.to_dict()}
  independent, _, _ = _train_marked(config, train, independent_watermark,
                                    "independent", workdir, benign)
  verdicts = scenarios.verify_scenarios(
      {"independent_t": independent.predict_proba,
       "independent_m": benign.predict_proba,
       "malicious": watermarked.predict_proba},
      key, test, m=config.verify.m, tau=config.verify.tau,
      seed=config.verify.seed)
  metrics.update(scenarios.scenario_metrics(verdicts, config.verify.alpha))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}


def format_table(metrics: Mapping[str, Any]) -> str:
  """The paper's Table 1 row and Table 3 block for one run, as text.

  A scenario that could not be verified shows ``n/a``.

  Args:
    metrics: the ``metrics`` of :func:`run_experiment`.
  """

  def cell(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, float) else "n/a"

  def row(name: str, values: Mapping[str, float], spec: str) -> str:
    return f"{name:<8} " + " ".join(
        f"{cell(values.get(s), spec):>14}" for s in scenarios.SCENARIOS)

  rows = [
      "BA (no watermark)  BA      ASR-A   ASR-C   D_p",
      f"{cell(metrics['benign_accuracy_no_watermark'], '.4f'):<18} "
      + " ".join(f"{cell(metrics[name], '.4f'):<7}"
                 for name in ("benign_accuracy", "asr_a", "asr_c"))
      + f" {cell(metrics['d_p'], '.4f')}",
      "",
      f"{'':<8} " + " ".join(f"{name:>14}" for name in scenarios.SCENARIOS),
      row("Delta P", metrics["delta_p"], ".4f"),
      row("p-value", metrics["p_value"], ".3g"),
  ]
  return "\n".join(rows)
