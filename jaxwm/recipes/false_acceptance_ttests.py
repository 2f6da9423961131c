"""The false-acceptance verifiers that decide by a one-sided paired t-test:
the dataset watermark's ownership test and MOVE's.

Each is a verifier of :mod:`jaxwm.recipes.false_acceptance`: it names the
architectures, seeds and examples of the never-marked models and returns
each model's verdict, the results record of its t-test
(``statistic``, ``p_value``, ``log10_p_value``, ``delta_p``, ``m``,
``alpha``, ``decision``, ...) with ``seed``, ``architecture`` and
``test_accuracy``, or ``{"error": why}`` where the test cannot be run
(the dataset test on a model that classifies fewer than two eligible test
images correctly).

Metrics: ``alpha``, ``models``, ``verified`` (models with a decided
test), ``false_acceptance_rate`` (the share of verified models accused,
``decision`` ``reject_h0``), ``accepted``, ``rate_upper_95``
(Clopper-Pearson), ``log10_p_value`` (quantiles over the verified models,
:data:`jaxwm.recipes.false_acceptance_rates.QUANTILES`),
``benign_accuracy`` (mean test accuracy) and, with several architectures,
``by_architecture`` (``models``, ``verified`` and the rate of each); for
MOVE, the owner's ``method`` record of ``experiments/model_stealing.py``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from jaxwm import data as jaxwm_data
from jaxwm import results
from jaxwm.poison import methods
from jaxwm.poison.ownership import verify_dataset_ownership
from jaxwm.recipes import dataset_watermark, model_stealing, scenarios
from jaxwm.recipes import false_acceptance_rates as rates
from jaxwm.recipes import stealing_methods
from jaxwm.train import recipe
from jaxwm.verify import TooFewCorrectError
from jaxwm.verify.levels import REJECT


def _rates(verdicts: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """``models``, ``verified`` and the acceptance rate of the verified."""
  verified = [v for v in verdicts if "error" not in v]
  entry = {"models": len(verdicts), "verified": len(verified)}
  if not verified:
    return {**entry, "false_acceptance_rate": results.not_computed(
        "no model could be verified (each classifies too few eligible "
        "test images correctly)")}
  accused = sum(v["decision"] == REJECT for v in verified)
  return {**entry, **rates.acceptance(accused, len(verified))}


class TTestVerifier:
  """What the t-test verifiers share: the models' architectures, seeds and
  examples, the verdict's bookkeeping, the summary and the picture.

  Model i has the training config ``architectures[i % A]`` (its role
  ``ROLES[i % A]``) with seed ``first_seed + i``, and trains on its own
  stratified subset of ``pool``.
  """

  ROLES: tuple[str, ...] = ()
  TITLE = ""

  def __init__(self, architectures: Sequence[Any], first_seed: int,
               pool: jaxwm_data.Dataset, test: jaxwm_data.Dataset,
               alpha: float):
    self.architectures = tuple(architectures)
    self.first_seed = first_seed
    self.pool = pool
    self.test = test
    self.alpha = float(alpha)

  def _test(self, model: recipe.TrainedModel, index: int) -> dict[str, Any]:
    """The t-test's record for model ``index``."""
    raise NotImplementedError

  def verdict(self, model: recipe.TrainedModel, index: int
              ) -> dict[str, Any]:
    """Model ``index``'s verdict (module docstring)."""
    return {"seed": self.first_seed + index,
            "architecture": self.ROLES[index % len(self.ROLES)],
            "test_accuracy": model.evaluate(self.test)["accuracy"],
            **self._test(model, index)}

  def summary(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of the module docstring over ``verdicts``."""
    metrics = {"alpha": self.alpha, **_rates(verdicts),
               "benign_accuracy": float(np.mean(
                   [v["test_accuracy"] for v in verdicts]))}
    verified = [v for v in verdicts if "error" not in v]
    if verified:
      metrics["log10_p_value"] = rates.log10_quantiles(
          [v["log10_p_value"] for v in verified])
    if len(self.ROLES) > 1:
      metrics["by_architecture"] = {
          role: _rates([v for v in verdicts if v["architecture"] == role])
          for role in self.ROLES}
    return metrics

  def picture(self, verdicts: list[dict[str, Any]]) -> None:
    """Histogram of the verified models' p-values (``p_values.png``; none
    when no model could be verified)."""
    p_values = [v["p_value"] for v in verdicts if "error" not in v]
    if p_values:
      rates.picture_p_values(
          p_values, self.alpha,
          f"{self.TITLE} on {len(p_values)} never-marked models")


class DatasetVerifier(TTestVerifier):
  """The dataset watermark's ownership test (block ``verify``) with the
  key ``experiments/dataset_watermark.py`` draws, on models of its recipe
  trained on subsets of the clean training set (model i: seed ``seed +
  i``)."""

  ROLES = ("benign",)
  TITLE = "dataset ownership t-test"

  def __init__(self, config, workdir: str, train: jaxwm_data.Dataset,
               test: jaxwm_data.Dataset):
    del workdir  # the owner trains no model
    _, self.key = methods.mark_dataset(
        train, config.watermark.to_dict(),
        dataset_watermark.watermark_rng(config, "watermarked"))
    self.verify = config.verify
    super().__init__((config,), config.seed, train, test, config.verify.alpha)

  def _test(self, model: recipe.TrainedModel, index: int) -> dict[str, Any]:
    del index  # one key for every model
    verify = self.verify
    classes = verify.get("source_classes")  # None: every class.
    try:
      result = verify_dataset_ownership(
          model.predict_proba, self.key, self.test, m=verify.m,
          tau=verify.tau, seed=verify.seed,
          source_classes=None if classes is None else tuple(classes))
    except TooFewCorrectError as error:
      result = scenarios.Unverified(str(error))
    return scenarios.result_entry(result, self.alpha)


class MoveVerifier(TTestVerifier):
  """MOVE's verdict (block ``move``: white-box or black-box) by the owner
  of ``experiments/model_stealing.py``, on models trained on the attacker
  half, alternately of the victim's architecture and of the
  ``independent`` block's (model i: seed ``seed +
  independent.seed_offset + i``). The owner's models and meta-classifiers
  are trained (or restored from the workdir) on the first verdict."""

  ROLES = ("victim", "independent")
  TITLE = "MOVE"

  def __init__(self, config, workdir: str, train: jaxwm_data.Dataset,
               test: jaxwm_data.Dataset):
    attacker, owner = jaxwm_data.disjoint_split(
        train, config.split.attacker_fraction, config.seed)
    self._run = stealing_methods.Run(config, workdir, owner, attacker, test)
    super().__init__(
        (config, model_stealing.independent_config(config)),
        config.seed + config.independent.seed_offset, attacker, test,
        config.move.alpha)

  @functools.cached_property
  def owner(self) -> stealing_methods.MoveOwner:
    return stealing_methods.MoveOwner(self._run)

  @functools.cached_property
  def _owner_summary(self) -> dict[str, Any]:
    return self.owner.summary()

  def _test(self, model: recipe.TrainedModel, index: int) -> dict[str, Any]:
    return self.owner.test(
        model, self.architectures[index % len(self.architectures)])

  def summary(self, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The t-test metrics and the owner's ``method`` record (e.g. the
    meta-classifier's accuracy on held-out images: a verifier that
    accuses nothing must still tell the victim from a benign model)."""
    return {**super().summary(verdicts), "method": self._owner_summary}
