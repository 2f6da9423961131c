"""How often Verify accepts a model that was never marked.

:func:`run_experiment` is the whole ``experiments/false_acceptance.py``
job. It trains ``false_acceptance.num_models`` non-marked models (each
with its own seed and its own stratified subset of the training set),
draws a fresh secret key for each and runs
:func:`jaxwm.watermark.adi.verify` at ``watermark.alpha``. The trigger labels are uniform and independent of every
model, so each acceptance is a Bernoulli trial with probability at most the
test's exact size (at most alpha; the binomial test is discrete). Each
model's verdict is stored in the workdir, so an interrupted run resumes.

Metrics: ``false_acceptance_rate``, ``accepted``, ``models``, ``alpha``,
``exact_size`` (the largest acceptance probability of a model at chance),
``rate_upper_95`` (Clopper-Pearson), ``mean_agreement``, ``benign_accuracy``
(mean test accuracy of the models).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from absl import logging
from scipy import stats

from jaxwm import data as jaxwm_data
from jaxwm.train import recipe
from jaxwm.watermark import adi


def exact_size(trials: int, chance: float, alpha: float) -> float:
  """The largest P[X >= c] <= alpha over c, X ~ Binomial(trials, chance)."""
  tails = stats.binom.sf(np.arange(trials + 1) - 1, trials, chance)
  return float(tails[tails <= alpha].max(initial=0.0))


def _upper_95(accepted: int, models: int) -> float:
  """One-sided 95% Clopper-Pearson upper bound of an acceptance rate."""
  if accepted == models:
    return 1.0
  return float(stats.beta.ppf(0.95, accepted + 1, models - accepted))


def _one_model(config, train, test, index: int) -> dict[str, Any]:
  model_config = config.copy_and_resolve_references()
  model_config.seed = config.seed + index
  subset = jaxwm_data.stratified_subset(
      train, config.false_acceptance.subset_fraction, model_config.seed)
  model = recipe.train_model(model_config, subset)
  keys = adi.keygen(config.watermark.num_triggers, train.num_classes,
                    train.image_shape)
  result = adi.verify(*keys, model.predict_proba,
                      alpha=config.watermark.alpha)
  return {"seed": model_config.seed,
          "test_accuracy": model.evaluate(test)["accuracy"],
          "agreement": result.agreement, "p_value": result.p_value,
          "accepted": bool(result.accepted)}


def summary(verdicts: list[dict[str, Any]], num_triggers: int,
            num_classes: int, alpha: float) -> dict[str, Any]:
  """The experiment's metrics (module docstring) over ``verdicts``."""
  accepted = sum(v["accepted"] for v in verdicts)
  models = len(verdicts)
  return {
      "false_acceptance_rate": accepted / models,
      "accepted": accepted,
      "models": models,
      "alpha": alpha,
      "exact_size": exact_size(num_triggers, 1.0 / num_classes, alpha),
      "rate_upper_95": _upper_95(accepted, models),
      "mean_agreement": float(np.mean([v["agreement"] for v in verdicts])),
      "benign_accuracy": float(np.mean([v["test_accuracy"]
                                        for v in verdicts])),
  }


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains and verifies the models; returns the launcher's outcome.

  ``metrics``, when given, is updated after each model with the summary of
  the models verified so far (the launcher's, so that a failure still
  reports them).
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  folder = os.path.join(workdir, "verdicts")
  os.makedirs(folder, exist_ok=True)
  verdicts = []
  for index in range(config.false_acceptance.num_models):
    path = os.path.join(folder, f"model-{config.seed + index}.json")
    if not os.path.exists(path):
      verdict = _one_model(config, train, test, index)
      with open(path + ".tmp", "w") as f:
        json.dump(verdict, f)
      os.replace(path + ".tmp", path)
      logging.info("model %d: %s", index, verdict)
    with open(path) as f:
      verdicts.append(json.load(f))
    metrics.update(summary(verdicts, config.watermark.num_triggers,
                           train.num_classes, config.watermark.alpha))
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
