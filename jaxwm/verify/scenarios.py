"""The three verification scenarios of the UBW paper (Section 5.3, App. C.2).

With the owner's WatermarkKey (our trigger), ownership verification
(:func:`jaxwm.verify.verify_dataset_ownership`) is run on three suspects:

* ``independent_t`` (Independent-T): a model trained on a dataset
  watermarked with a *different* trigger, queried with ours;
* ``independent_m`` (Independent-M): a model trained on the benign dataset,
  queried with our trigger;
* ``malicious``: a model trained on our watermarked dataset, queried with
  our trigger.

A sound verification rejects H0 only for ``malicious`` (Tables 3-4: p-values
near 1 for the independent scenarios, far below 0.01 for the malicious one).
"""

from __future__ import annotations

from typing import Any, Mapping

from jaxwm.data.dataset import Dataset
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.verify.dataset_ownership import PredictProba
from jaxwm.verify.dataset_ownership import verify_dataset_ownership
from jaxwm.verify.ttest import PairedTTestResult

SCENARIOS = ("independent_t", "independent_m", "malicious")


def verify_scenarios(suspects: Mapping[str, PredictProba], key: WatermarkKey,
                     test_dataset: Dataset, m: int = 100, tau: float = 0.25,
                     seed: int = 0,
                     keys: Mapping[str, WatermarkKey] | None = None
                     ) -> dict[str, PairedTTestResult]:
  """Verifies each scenario's suspect with the owner's key.

  Args:
    suspects: the black-box ``predict_proba`` of each scenario, keyed by
      the names in :data:`SCENARIOS` (all three).
    key: the owner's WatermarkKey.
    test_dataset: held-out images with true labels.
    m: test images per verification (Appendix C.2: 100).
    tau: the margin of H0 (Section 5.3: 0.25).
    seed: seeds the choice of test images; the same for every scenario.
    keys: the key of a scenario where it is not ``key``, e.g. the
      ``independent_t`` key with a different trigger when the suspect is
      the watermarked model itself.

  Returns:
    {scenario: PairedTTestResult}, in the order of :data:`SCENARIOS`.
  """
  if set(suspects) != set(SCENARIOS):
    raise ValueError(
        f"suspects are keyed {sorted(suspects)}; give exactly one "
        f"predict_proba for each of {SCENARIOS}.")
  keys = dict(keys or {})
  if not set(keys) <= set(SCENARIOS):
    raise ValueError(f"keys are given for {sorted(keys)}; use names from "
                     f"{SCENARIOS}.")
  return {name: verify_dataset_ownership(suspects[name], keys.get(name, key),
                                         test_dataset, m=m, tau=tau,
                                         seed=seed)
          for name in SCENARIOS}


def scenario_metrics(results: Mapping[str, PairedTTestResult]
                     ) -> dict[str, Any]:
  """The results contract's ``p_value`` and ``delta_p`` objects.

  Returns:
    {"p_value": {scenario: float}, "delta_p": {scenario: float},
    "verification_m": {scenario: int}}.
  """
  return {
      "p_value": {name: r.p_value for name, r in results.items()},
      "delta_p": {name: r.delta_p for name, r in results.items()},
      "verification_m": {name: r.m for name, r in results.items()},
  }
