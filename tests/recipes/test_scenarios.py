"""Tests of the three verification scenarios with hand-made suspects."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.poison import poisoned_label
from jaxwm import results
from jaxwm.recipes import scenarios
from jaxwm.verify import ttest

K = 4


def _dataset(n=200):
  """The class is written as grey level 40 * (class + 1) in the top rows."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 100, (n, 12, 12, 1), dtype=np.uint8)
  labels = np.arange(n) % K
  images[:, :3] = (40 * (labels + 1))[:, None, None, None]
  return Dataset(images, labels, K)


def _key(position):
  config = {"method": "ubw_p", "patch_size": 3, "patch_position": position}
  return poisoned_label.mark(_dataset(), config, jax.random.key(0))[1]


def _suspect(reacts_to=None):
  """Reads the class from the top rows; if ``reacts_to`` (a key) is given,
  a patched image gets its probability moved to the next class."""

  def predict_proba(images):
    images = np.asarray(images)
    classes = np.rint(images[:, 0, 0, 0] * 255 / 40).astype(int) - 1
    probabilities = np.full((len(images), K), 0.02)
    probabilities[np.arange(len(images)), classes] = 0.94
    if reacts_to is not None:
      patch = reacts_to.trigger.alpha > 0
      hit = np.all(np.abs(images - reacts_to.trigger.pattern)[:, patch]
                   < 0.5 / 255, axis=1)
      probabilities[hit] = np.roll(probabilities[hit], 1, axis=1)
    return probabilities

  return predict_proba


def test_only_the_malicious_suspect_is_judged_trained_on_the_dataset():
  ours, other = _key((9, 9)), _key((0, 9))
  results = scenarios.verify_scenarios(
      {"malicious": _suspect(ours), "independent_m": _suspect(),
       "independent_t": _suspect(other)}, ours, _dataset(n=120), m=30)
  assert list(results) == list(scenarios.SCENARIOS)
  # Malicious: P_b = 0.94, P_m = 0.02 for every image: Delta P = 0.92 with
  # no spread, the exact sign test's 2^-m. The others do not react:
  # Delta P = 0.
  assert results["malicious"].delta_p == pytest.approx(0.92)
  assert results["malicious"].p_value == pytest.approx(2.0**-30)
  for name in ("independent_m", "independent_t"):
    assert results[name].delta_p == pytest.approx(0.0, abs=1e-12)
    assert results[name].p_value == pytest.approx(1.0)
    assert results[name].m == 30
  table = scenarios.scenario_metrics(results, alpha=0.01)
  assert table["p_value"] == {n: r.p_value for n, r in results.items()}
  assert table["delta_p"]["malicious"] == pytest.approx(0.92)
  malicious = table["verification"]["malicious"]
  # Equal differences: the t statistic is undefined (None), the p-value is
  # the sign test's, and the dof is still recorded.
  assert malicious["statistic"] is None
  assert malicious["dof"] == 29
  assert malicious["decision"] == scenarios.REJECT
  assert malicious["log10_p_value"] == pytest.approx(
      np.log10(results["malicious"].p_value))
  for name in scenarios.SCENARIOS:
    entry = table["verification"][name]
    assert (entry["m"], entry["tau"], entry["alpha"]) == (30, 0.25, 0.01)
    assert entry["p_value"] == results[name].p_value
  assert table["verification"]["independent_m"]["decision"] == (
      scenarios.RETAIN)


def _wrong_suspect(images):
  """Never predicts the true class: no test image is classified right."""
  return np.roll(_suspect()(images), 1, axis=1)


def test_a_scenario_that_cannot_be_verified_is_reported_with_its_reason():
  ours = _key((9, 9))
  outcome = scenarios.verify_scenarios(
      {"malicious": _suspect(ours), "independent_m": _wrong_suspect,
       "independent_t": _suspect()}, ours, _dataset(n=120), m=30)
  assert isinstance(outcome["independent_m"], scenarios.Unverified)
  assert "only 0 of the" in outcome["independent_m"].reason
  table = scenarios.scenario_metrics(outcome, alpha=0.05)
  assert table["verification"]["independent_m"] == {
      "error": outcome["independent_m"].reason}
  assert set(table["p_value"]) == {"malicious", "independent_t"}
  assert table["verification"]["malicious"]["decision"] == scenarios.REJECT
  written = results.build_results(
      experiment="test", config={"seed": 0}, dataset="d", model="m", seed=0,
      metrics=table, wall_s=0.0)
  assert written["status"] == "partial"
  assert written["incomplete"] == {
      "metrics.verification.independent_m": outcome["independent_m"].reason}


def test_every_field_of_the_result_is_reported():
  # A field the result dataclass gains appears without a change here.
  extended = dataclasses.make_dataclass(
      "Extended", [("extra", str, dataclasses.field(default="kept"))],
      bases=(ttest.PairedTTestResult,),
      frozen=True)
  result = extended(statistic=2.5, dof=19, p_value=0.01, log10_p_value=-2.0,
                    ttest_log10_p_value=-2.0, delta_p=0.4, m=20, tau=0.25)
  entry = scenarios.result_entry(result, alpha=0.05)
  assert entry == {"statistic": 2.5, "dof": 19, "p_value": 0.01,
                   "log10_p_value": -2.0, "ttest_log10_p_value": -2.0,
                   "delta_p": 0.4, "m": 20, "tau": 0.25,
                   "p_value_definition": ttest.SIGN_FLOORED,
                   "extra": "kept", "alpha": 0.05,
                   "decision": scenarios.REJECT}
  with pytest.raises(ValueError, match="alpha must be in"):
    scenarios.result_entry(result, alpha=1.5)


def test_every_scenario_needs_a_suspect():
  with pytest.raises(ValueError, match="exactly one predict_proba"):
    scenarios.verify_scenarios({"malicious": _suspect()}, _key((9, 9)),
                               _dataset())
  with pytest.raises(ValueError, match="exactly one predict_proba"):
    scenarios.verify_scenarios(
        {"malicious": _suspect(), "independent_m": _suspect(),
         "independent_t": _suspect(), "independent_model": _suspect()},
        _key((9, 9)), _dataset())


def test_the_independent_trigger_model_is_reported_beside_the_three():
  ours, other = _key((9, 9)), _key((0, 9))
  watermarked = _suspect(ours)
  outcome = scenarios.verify_scenarios(
      {"independent_trigger_model": _suspect(other),
       "malicious": watermarked, "independent_m": _suspect(),
       "independent_t": watermarked}, ours, _dataset(n=120), m=50,
      keys={"independent_t": other}, source_classes=(1,))
  assert list(outcome) == [*scenarios.SCENARIOS, "independent_trigger_model"]
  # 30 test images of class 1: every scenario samples from them alone.
  assert {result.m for result in outcome.values()} == {30}
  assert outcome["malicious"].delta_p == pytest.approx(0.92)
  for name in ("independent_t", "independent_trigger_model"):
    assert outcome[name].delta_p == pytest.approx(0.0, abs=1e-12)
  table = scenarios.scenario_metrics(outcome, alpha=0.01)
  assert table["verification"]["independent_trigger_model"]["decision"] == (
      scenarios.RETAIN)


def test_a_scenario_can_use_its_own_key():
  # The watermarked model itself, queried with a different trigger
  # (Independent-T as the crafted-poison experiment runs it).
  ours, other = _key((9, 9)), _key((0, 9))
  watermarked = _suspect(ours)
  results = scenarios.verify_scenarios(
      {"malicious": watermarked, "independent_m": _suspect(),
       "independent_t": watermarked}, ours, _dataset(n=120), m=30,
      keys={"independent_t": other})
  assert results["malicious"].delta_p == pytest.approx(0.92)
  assert results["independent_t"].delta_p == pytest.approx(0.0, abs=1e-12)
  with pytest.raises(ValueError, match="keys are given for"):
    scenarios.verify_scenarios(
        {"malicious": watermarked, "independent_m": _suspect(),
         "independent_t": watermarked}, ours, _dataset(n=120), m=30,
        keys={"independent": other})
