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
   :mod:`jaxwm.recipes.scenarios` with the owner's key.

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
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging

from jaxwm.data.dataset import Dataset
from jaxwm.poison.methods import mark_dataset
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.recipes import scenarios
from jaxwm.recipes.common import model_dir, watermark_metrics
from jaxwm.train import recipe

# The engine's key streams of the three models, and the watermark keys'.
STREAMS = {"benign": 0, "watermarked": 1, "independent": 2}
WATERMARK_STREAMS = {"watermarked": 1000, "independent": 1001}
KEY_FILE = "watermark_key"


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
