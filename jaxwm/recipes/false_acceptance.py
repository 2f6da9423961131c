"""How often a verifier accepts a model that was never marked.

:func:`run_experiment` is the whole ``experiments/false_acceptance.py``
job. It trains ``false_acceptance.num_models`` non-marked models (each
with its own seed and its own stratified subset, ``subset_fraction``, of
the verifier's examples), verifies each with the verifier
``false_acceptance.verifier`` names (:data:`VERIFIERS`) and reports how
many it accepts, with the rate's one-sided 95% Clopper-Pearson upper
bound.

* ``adi`` (:class:`AdiVerifier`): a fresh secret key per model and
  :func:`jaxwm.watermark.adi.verify`, which decides by two rules: the
  binomial test at ``watermark.alpha`` and the paper's threshold rule at
  ``watermark.eps``. The trigger labels are uniform and independent of
  every model, so each acceptance is a Bernoulli trial with probability at
  most the rule's exact size (for the binomial test at most alpha; it is
  discrete).
* ``dataset`` and ``move``: the dataset watermark's ownership t-test and
  MOVE's (:mod:`jaxwm.recipes.false_acceptance_ttests`, whose docstring
  gives their metrics).

A verifier names the models' training configs (``architectures``; model
i has ``architectures[i % A]`` with seed ``first_seed + i``) and the
examples they draw their subsets from (``pool``), and gives ``verdict(model,
i)``, ``summary(verdicts)`` and ``picture(verdicts)``.
With ``false_acceptance.ensemble_size`` E > 0 the models are trained E at
a time (per architecture) in one program
(:func:`jaxwm.train.recipe.train_ensemble`, with
``false_acceptance.ensemble_strategy``), each exactly as it would be
trained alone.
Each model's verdict is stored in the workdir, so an interrupted run
resumes, in a folder named by the fingerprint of everything that determines
it (:func:`verdict_identity`: the whole config but the number of models,
the training and test data, the jaxwm version and a digest of its
sources). A rerun with any other
value starts anew in its own folder; each verdict file keeps its identity
record, checked before it is reused. Verdicts are shared between
sequential and ensemble runs (:data:`HOW_NOT_WHAT`). The models
themselves are exported to the workdir, each in a folder named after what
it depends on (its training config and examples), so that a run with
another verifier, or another alpha, loads them instead of training them
again.

Adi's metrics, for each rule (suffix ``_binomial``, with ``alpha``, or
``_threshold``, with ``eps``): ``false_acceptance_rate``, ``accepted`` (how
many models), ``exact_size`` (the largest acceptance probability of a model
at chance) and ``rate_upper_95`` (Clopper-Pearson); and ``models``,
``mean_agreement``, ``benign_accuracy`` (mean test accuracy of the models).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
from absl import logging
from scipy import stats

from jaxwm import data as jaxwm_data
from jaxwm import identity, monitor
from jaxwm.fingerprint import fingerprint
from jaxwm.recipes import common
from jaxwm.recipes import false_acceptance_rates as rates
from jaxwm.recipes import false_acceptance_ttests as ttests
from jaxwm.train import recipe
from jaxwm.train import saved_model
from jaxwm.watermark import adi


# Fields that change how many models are trained, or how, but not any
# model: an ensemble member is the model trained alone (up to the
# floating-point order of a few sums), so verdicts are shared across them.
HOW_NOT_WHAT = ("num_models", "ensemble_size", "ensemble_strategy")


def exact_size(trials: int, chance: float, alpha: float) -> float:
  """The largest P[X >= c] <= alpha over c, X ~ Binomial(trials, chance)."""
  tails = stats.binom.sf(np.arange(trials + 1) - 1, trials, chance)
  return float(tails[tails <= alpha].max(initial=0.0))


def exact_size_threshold(trials: int, chance: float, eps: float) -> float:
  """P[X >= trials - floor(eps trials)], X ~ Binomial(trials, chance): how
  often the paper's rule accepts a model at chance."""
  return float(stats.binom.sf(
      trials - adi.max_disagreements(trials, eps) - 1, trials, chance))


def summary(verdicts: list[dict[str, Any]], watermark,
            num_classes: int) -> dict[str, Any]:
  """Adi's metrics (module docstring) over ``verdicts``.

  Args:
    verdicts: the models' verdicts so far, as :meth:`AdiVerifier.verdict`
      returns them.
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
    metrics.update({f"exact_size_{rule}": size,
                    **rates.acceptance(accepted, models, f"_{rule}")})
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
  rates.picture_p_values(
      [v["p_value"] for v in verdicts], watermark.alpha,
      f"binomial test on {count} never-marked models")
  monitor.add_histogram(
      "agreement", [v["agreement"] for v in verdicts],
      xlabel="agreement with the trigger labels",
      lines={f"chance 1/K = {1 / num_classes:.2f}": 1 / num_classes,
             f"threshold rule 1 - eps = {1 - watermark.eps:g}":
             1 - watermark.eps},
      title=f"trigger-set agreement of {count} never-marked models")


class AdiVerifier:
  """Adi et al.'s Verify with a fresh secret key per model, on models of
  the config's recipe trained on subsets of the training set (model i:
  seed ``seed + i``)."""

  def __init__(self, config, workdir: str, train: jaxwm_data.Dataset,
               test: jaxwm_data.Dataset):
    del workdir  # the owner trains no model
    self.config, self.test = config, test
    self.architectures = (config,)
    self.first_seed = config.seed
    self.pool = train

  def verdict(self, model: recipe.TrainedModel, index: int
              ) -> dict[str, Any]:
    """Verifies ``model`` against a fresh key."""
    watermark = self.config.watermark
    keys = adi.keygen(watermark.num_triggers, self.pool.num_classes,
                      self.pool.image_shape)
    result = adi.verify(*keys, model.predict_proba, alpha=watermark.alpha,
                        eps=watermark.eps)
    return {"seed": self.first_seed + index,
            "test_accuracy": model.evaluate(self.test)["accuracy"],
            "agreement": result.agreement, "p_value": result.p_value,
            "accepted_binomial": bool(result.accepted_binomial),
            "accepted_threshold": bool(result.accepted_threshold)}

  def summary(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    return summary(verdicts, self.config.watermark, self.pool.num_classes)

  def picture(self, verdicts: list[dict[str, Any]]) -> None:
    picture_verdicts(verdicts, self.config.watermark, self.pool.num_classes)


# ``false_acceptance.verifier`` -> its verifier.
VERIFIERS = {"adi": AdiVerifier, "dataset": ttests.DatasetVerifier,
             "move": ttests.MoveVerifier}


def _member_config(architecture, seed: int):
  """``architecture`` with seed ``seed``: model i's training config."""
  model_config = architecture.copy_and_resolve_references()
  model_config.seed = seed
  return model_config


def _export_prefix(workdir: str, model_config, pool_digest: str,
                   rows: np.ndarray) -> str:
  """Where a model is exported: a folder named after its training config,
  its examples (the pool's digest and its rows) and jaxwm's version."""
  rows_digest = hashlib.sha256(
      np.ascontiguousarray(rows, np.int64).tobytes()).hexdigest()
  return os.path.join(
      common.model_dir(workdir, "false_acceptance_model", model_config,
                       pool_digest, rows_digest), "model")


def _trained_models(config, verifier, indices: list[int], workdir: str,
                    pool_digest: str) -> list[recipe.TrainedModel]:
  """The models ``indices``, all of one architecture: model i has seed
  ``verifier.first_seed + i`` and its own stratified subset of
  ``verifier.pool``; one after another, or as ensembles of
  ``false_acceptance.ensemble_size``. Each is exported to the workdir
  (:func:`jaxwm.train.saved_model.export_model`) and loaded from there by
  later runs, whatever they verify."""
  block = config.false_acceptance
  architecture = verifier.architectures[
      indices[0] % len(verifier.architectures)]
  pool = verifier.pool
  configs = [_member_config(architecture, verifier.first_seed + index)
             for index in indices]
  rows = [jaxwm_data.stratified_indices(pool.labels, block.subset_fraction,
                                        model_config.seed)
          for model_config in configs]
  prefixes = [_export_prefix(workdir, model_config, pool_digest, model_rows)
              for model_config, model_rows in zip(configs, rows)]
  models = {i: saved_model.load_model(prefix)
            for i, prefix in enumerate(prefixes)
            if os.path.exists(prefix + saved_model.DESCRIPTION_SUFFIX)}
  missing = [i for i in range(len(indices)) if i not in models]
  if not missing:
    return [models[i] for i in range(len(indices))]
  if block.ensemble_size:
    trained = recipe.train_ensemble(
        architecture, pool, np.stack([rows[i] for i in missing]),
        [configs[i].seed for i in missing], strategy=block.ensemble_strategy)
  else:
    trained = [recipe.train_model(configs[i], pool.take(rows[i]))
               for i in missing]
  for i, model in zip(missing, trained):
    saved_model.export_model(model, prefixes[i])
    models[i] = model
  return [models[i] for i in range(len(indices))]


def _train_missing(config, verifier, indices: list[int], workdir: str,
                   pool_digest: str) -> dict[int, recipe.TrainedModel]:
  """The models ``indices``, trained (or loaded) per architecture."""
  count = len(verifier.architectures)
  models = {}
  for kind in range(count):
    of_kind = [index for index in indices if index % count == kind]
    if of_kind:
      models.update(zip(of_kind, _trained_models(
          config, verifier, of_kind, workdir, pool_digest)))
  return models


def verdict_identity(config, train: jaxwm_data.Dataset,
                     test: jaxwm_data.Dataset) -> dict[str, Any]:
  """What determines the run's verdicts (all but the number of models).

  Returns:
    A JSON-able dict: ``config`` (the whole config but the
    ``false_acceptance`` fields of :data:`HOW_NOT_WHAT`), ``train`` and
    ``test`` (their :func:`jaxwm.identity.dataset_identity`), the code
    versions and the digest of jaxwm's sources (a changed test verifies
    again; the models are loaded, not trained again).
  """
  fields = config.to_dict()
  fields["false_acceptance"] = {
      name: value for name, value in fields["false_acceptance"].items()
      if name not in HOW_NOT_WHAT}
  return identity.canonical({
      "config": fields, "train": identity.dataset_identity(train),
      "test": identity.dataset_identity(test), **identity.code_versions(),
      "source": identity.source_digest()})


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains and verifies the models; returns the launcher's outcome.

  ``metrics``, when given, is updated after each group of models with the
  summary of the models verified so far (the launcher's, so that a failure
  still reports them).
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  record = verdict_identity(config, train, test)
  folder = os.path.join(workdir, f"verdicts-{fingerprint(record)}")
  verifier = VERIFIERS[config.false_acceptance.verifier](config, workdir,
                                                         train, test)
  num_models = config.false_acceptance.num_models
  # E models of each architecture at a time.
  group = ((config.false_acceptance.ensemble_size or 1) *
           len(verifier.architectures))
  pool_digest = fingerprint(identity.dataset_identity(verifier.pool))
  verdicts = []
  monitor.expect_models(num_models)
  for first in range(0, num_models, group):
    indices = list(range(first, min(first + group, num_models)))
    paths = [os.path.join(folder, f"model-{index}.json") for index in indices]
    records = [{**record, "model": index} for index in indices]
    found = [identity.read_json(path, model_record, what="the verdict")
             for path, model_record in zip(paths, records)]
    missing = [i for i, verdict in enumerate(found) if verdict is None]
    for _ in range(len(indices) - len(missing)):
      monitor.skip_model()
    models = _train_missing(
        config, verifier, [indices[i] for i in missing], workdir,
        pool_digest) if missing else {}
    for i in missing:
      found[i] = verifier.verdict(models[indices[i]], indices[i])
      identity.write_json(paths[i], records[i], found[i])
      logging.info("model %d: %s", indices[i], found[i])
    verdicts.extend(found)
    metrics.update(verifier.summary(verdicts))
  verifier.picture(verdicts)
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
