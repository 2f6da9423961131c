"""How often Verify accepts a model that was never marked.

:func:`run_experiment` is the whole ``experiments/false_acceptance.py``
job. It trains ``false_acceptance.num_models`` non-marked models (each
with its own seed and its own stratified subset of the training set),
draws a fresh secret key for each and runs
:func:`jaxwm.watermark.adi.verify`, which decides by two rules: the
binomial test at ``watermark.alpha`` and the paper's threshold rule at
``watermark.eps``. The trigger labels are uniform and independent of every
model, so each acceptance is a Bernoulli trial with probability at most the
rule's exact size (for the binomial test at most alpha; it is discrete).
Each model's verdict is stored in the workdir, so an interrupted run
resumes, in a folder named by the fingerprint of everything that determines
it (:func:`verdict_identity`: the whole config but the number of models,
the training and test data and the jaxwm version). A rerun with any other
value starts anew in its own folder; each verdict file keeps its identity
record, checked before it is reused.

Metrics, for each rule (suffix ``_binomial``, with ``alpha``, or
``_threshold``, with ``eps``): ``false_acceptance_rate``, ``accepted`` (how
many models), ``exact_size`` (the largest acceptance probability of a model
at chance) and ``rate_upper_95`` (Clopper-Pearson); and ``models``,
``mean_agreement``, ``benign_accuracy`` (mean test accuracy of the models).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import logging
from scipy import stats

from jaxwm import data as jaxwm_data
from jaxwm import identity, monitor
from jaxwm.fingerprint import fingerprint
from jaxwm.train import recipe
from jaxwm.watermark import adi


def exact_size(trials: int, chance: float, alpha: float) -> float:
  """The largest P[X >= c] <= alpha over c, X ~ Binomial(trials, chance)."""
  tails = stats.binom.sf(np.arange(trials + 1) - 1, trials, chance)
  return float(tails[tails <= alpha].max(initial=0.0))


def exact_size_threshold(trials: int, chance: float, eps: float) -> float:
  """P[X >= trials - floor(eps trials)], X ~ Binomial(trials, chance): how
  often the paper's rule accepts a model at chance."""
  return float(stats.binom.sf(
      trials - adi.max_disagreements(trials, eps) - 1, trials, chance))


def _upper_95(accepted: int, models: int) -> float:
  """One-sided 95% Clopper-Pearson upper bound of an acceptance rate."""
  test = stats.binomtest(accepted, models, alternative="less")
  return float(test.proportion_ci(0.95, method="exact").high)


def _one_model(config, train, test, index: int) -> dict[str, Any]:
  model_config = config.copy_and_resolve_references()
  model_config.seed = config.seed + index
  subset = jaxwm_data.stratified_subset(
      train, config.false_acceptance.subset_fraction, model_config.seed)
  model = recipe.train_model(model_config, subset)
  keys = adi.keygen(config.watermark.num_triggers, train.num_classes,
                    train.image_shape)
  result = adi.verify(*keys, model.predict_proba,
                      alpha=config.watermark.alpha, eps=config.watermark.eps)
  return {"seed": model_config.seed,
          "test_accuracy": model.evaluate(test)["accuracy"],
          "agreement": result.agreement, "p_value": result.p_value,
          "accepted_binomial": bool(result.accepted_binomial),
          "accepted_threshold": bool(result.accepted_threshold)}


def verdict_identity(config, train: jaxwm_data.Dataset,
                     test: jaxwm_data.Dataset) -> dict[str, Any]:
  """What determines the run's verdicts (all but the number of models).

  Returns:
    A JSON-able dict: ``config`` (the whole config but
    ``false_acceptance.num_models``), ``train`` and ``test`` (their
    :func:`jaxwm.identity.dataset_identity`) and the code versions.
  """
  fields = config.to_dict()
  fields["false_acceptance"] = {
      name: value for name, value in fields["false_acceptance"].items()
      if name != "num_models"}
  return identity.canonical({
      "config": fields, "train": identity.dataset_identity(train),
      "test": identity.dataset_identity(test), **identity.code_versions()})


def summary(verdicts: list[dict[str, Any]], watermark,
            num_classes: int) -> dict[str, Any]:
  """The experiment's metrics (module docstring) over ``verdicts``.

  Args:
    verdicts: the models' verdicts so far, as ``_one_model`` returns them.
    watermark: the config's ``watermark`` block (``num_triggers``,
      ``alpha``, ``eps``).
    num_classes: K; a model at chance agrees with a trigger label with
      probability 1/K.
  """
  chance = 1.0 / num_classes
  sizes = {"binomial": exact_size(watermark.num_triggers, chance,
                                  watermark.alpha),
           "threshold": exact_size_threshold(watermark.num_triggers, chance,
                                             watermark.eps)}
  models = len(verdicts)
  metrics = {"alpha": watermark.alpha, "eps": watermark.eps,
             "models": models}
  for rule, size in sizes.items():
    accepted = sum(v[f"accepted_{rule}"] for v in verdicts)
    metrics.update({f"false_acceptance_rate_{rule}": accepted / models,
                    f"accepted_{rule}": accepted,
                    f"exact_size_{rule}": size,
                    f"rate_upper_95_{rule}": _upper_95(accepted, models)})
  metrics.update(
      mean_agreement=float(np.mean([v["agreement"] for v in verdicts])),
      benign_accuracy=float(np.mean([v["test_accuracy"] for v in verdicts])))
  return metrics


def picture_verdicts(verdicts: list[dict[str, Any]], watermark,
                     num_classes: int) -> None:
  """Histograms of the non-marked models' p-values (``p_values.png``,
  log10, with alpha) and trigger-set agreements (``agreement.png``, with
  chance 1/K and the paper's acceptance threshold 1 - eps)."""
  count = len(verdicts)
  monitor.add_histogram(
      "p_values", [v["p_value"] for v in verdicts], xlabel="p-value",
      log10=True, lines={f"alpha = {watermark.alpha:g}": watermark.alpha},
      title=f"binomial test on {count} never-marked models")
  monitor.add_histogram(
      "agreement", [v["agreement"] for v in verdicts],
      xlabel="agreement with the trigger labels",
      lines={f"chance 1/K = {1 / num_classes:.2f}": 1 / num_classes,
             f"threshold rule 1 - eps = {1 - watermark.eps:g}":
             1 - watermark.eps},
      title=f"trigger-set agreement of {count} never-marked models")


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains and verifies the models; returns the launcher's outcome.

  ``metrics``, when given, is updated after each model with the summary of
  the models verified so far (the launcher's, so that a failure still
  reports them).
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  record = verdict_identity(config, train, test)
  folder = os.path.join(workdir, f"verdicts-{fingerprint(record)}")
  verdicts = []
  monitor.expect_models(config.false_acceptance.num_models)
  for index in range(config.false_acceptance.num_models):
    path = os.path.join(folder, f"model-{index}.json")
    model_record = {**record, "model": index}
    verdict = identity.read_json(path, model_record, what="the verdict")
    if verdict is None:
      verdict = _one_model(config, train, test, index)
      identity.write_json(path, model_record, verdict)
      logging.info("model %d: %s", index, verdict)
    else:
      monitor.skip_model()
    verdicts.append(verdict)
    metrics.update(summary(verdicts, config.watermark, train.num_classes))
  picture_verdicts(verdicts, config.watermark, train.num_classes)
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
