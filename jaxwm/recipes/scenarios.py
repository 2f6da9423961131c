"""The verification scenarios of the UBW paper (Section 5.3, App. C.2).

With the owner's WatermarkKey (our trigger), ownership verification
(:func:`jaxwm.poison.verify_dataset_ownership`) is run on the paper's three
scenarios:

* ``independent_t`` (Independent-T): the watermarked model queried with a
  trigger *different* from the one it was trained with ("we query the
  attacked suspicious model using the trigger that is different from the
  one used for model training"): does the test answer to the owner's
  trigger only, or to any trigger of the same kind?
* ``independent_m`` (Independent-M): a model trained on the benign dataset,
  queried with our trigger: does the trigger alone move a clean model?
* ``malicious``: a model trained on our watermarked dataset, queried with
  our trigger.

and on one more, beside them (:data:`EXTRA_SCENARIOS`), not one of the
paper's:

* ``independent_trigger_model``: a model trained on the dataset watermarked
  by someone else, with a different trigger, queried with ours: would
  another owner's watermark be taken for ours?

A sound verification rejects H0 only for ``malicious`` (Tables 3-4: p-values
near 1 for the independent scenarios, far below 0.01 for the malicious one).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from absl import logging

from jaxwm import results as results_lib
from jaxwm.data.dataset import Dataset
from jaxwm.poison.ownership import verify_dataset_ownership
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.verify import PairedTTestResult, PredictProba, TooFewCorrectError
from jaxwm.verify.levels import REJECT, RETAIN

SCENARIOS = ("independent_t", "independent_m", "malicious")
EXTRA_SCENARIOS = ("independent_trigger_model",)


@dataclasses.dataclass(frozen=True)
class Unverified:
  """A scenario the test could not be run on, and why (e.g. a suspect that
  classifies too few eligible test images correctly)."""

  reason: str


ScenarioResult = PairedTTestResult | Unverified


def verify_scenarios(suspects: Mapping[str, PredictProba], key: WatermarkKey,
                     test_dataset: Dataset, m: int = 100, tau: float = 0.25,
                     seed: int = 0,
                     keys: Mapping[str, WatermarkKey] | None = None,
                     source_classes: Sequence[int] | None = None
                     ) -> dict[str, ScenarioResult]:
  """Verifies each scenario's suspect with the owner's key.

  Args:
    suspects: the black-box ``predict_proba`` of each scenario, keyed by
      the names in :data:`SCENARIOS` (all three) and, optionally, in
      :data:`EXTRA_SCENARIOS`.
    key: the owner's WatermarkKey.
    test_dataset: held-out images with true labels.
    m: test images per verification (Appendix C.2: 100).
    tau: the margin of H0 (Section 5.3: 0.25).
    seed: seeds the choice of test images; the same for every scenario.
    keys: the key of a scenario where it is not ``key``: the
      ``independent_t`` key, with a different trigger, since its suspect is
      the watermarked model itself.
    source_classes: sample the test images from these classes (the paper's
      evaluation: ``(0,)``, Appendix C.2); None for every class the
      watermark acts on.

  Returns:
    {scenario: PairedTTestResult, or Unverified when the suspect classifies
    fewer than 2 eligible test images correctly}, the paper's scenarios
    first, in the order of :data:`SCENARIOS`. Any other error is raised.
  """
  names = [name for name in SCENARIOS + EXTRA_SCENARIOS if name in suspects]
  if not set(SCENARIOS) <= set(suspects) or len(names) != len(suspects):
    raise ValueError(
        f"suspects are keyed {sorted(suspects)}; give exactly one "
        f"predict_proba for each of {SCENARIOS} and, optionally, for "
        f"{EXTRA_SCENARIOS}.")
  keys = dict(keys or {})
  if not set(keys) <= set(names):
    raise ValueError(f"keys are given for {sorted(keys)}; use names from "
                     f"{tuple(names)}.")
  outcome: dict[str, ScenarioResult] = {}
  for name in names:
    try:
      outcome[name] = verify_dataset_ownership(
          suspects[name], keys.get(name, key), test_dataset, m=m, tau=tau,
          seed=seed, source_classes=source_classes)
    except TooFewCorrectError as error:
      logging.warning("scenario %s cannot be verified: %s", name, error)
      outcome[name] = Unverified(str(error))
  return outcome


def result_entry(result: ScenarioResult, alpha: float) -> dict[str, Any]:
  """One scenario's entry of the results JSON.

  Args:
    result: the scenario's outcome.
    alpha: the significance level of the decision, in (0, 1).

  Returns:
    Every field of the PairedTTestResult (``statistic``, ``dof``,
    ``p_value``, ``log10_p_value``, ``delta_p``, ``m``, ``tau``, ...) with
    ``alpha`` and
    ``decision`` (:data:`REJECT` when ``p_value < alpha``, else
    :data:`RETAIN`); or ``{"error": reason}`` for an Unverified scenario.
  """
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha}; e.g. "
                     "--config.verify.alpha=0.01.")
  if isinstance(result, Unverified):
    return results_lib.not_computed(result.reason)
  entry = dataclasses.asdict(result)
  entry.update(alpha=float(alpha),
               decision=REJECT if result.rejects(alpha) else RETAIN)
  return entry


def scenario_metrics(results: Mapping[str, ScenarioResult],
                     alpha: float) -> dict[str, Any]:
  """The results contract's per-scenario objects.

  Args:
    results: from :func:`verify_scenarios`.
    alpha: the significance level of the decisions.

  Returns:
    {"verification": {scenario: :func:`result_entry`}, "p_value":
    {scenario: float}, "delta_p": {scenario: float}}, the last two for the
    scenarios that could be verified.
  """
  computed = {name: result for name, result in results.items()
              if isinstance(result, PairedTTestResult)}
  return {
      "verification": {name: result_entry(result, alpha)
                       for name, result in results.items()},
      "p_value": {name: r.p_value for name, r in computed.items()},
      "delta_p": {name: r.delta_p for name, r in computed.items()},
  }
