"""The one-sided paired t-test on the meta-classifier's confidences."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from jaxwm.watermark.move import verification


def _references(benign, shifts=(0.0, 0.01, -0.01, 0.02, -0.02, 0.005)):
  """[K, m]: ``benign`` (B, row 0) and copies of it moved by ``shifts``."""
  benign = np.asarray(benign)
  return np.stack([np.clip(benign + shift, 0, 1) for shift in shifts])


def _test(suspect, references, alpha=0.01):
  return verification.ownership_test(
      np.asarray(suspect), references, setting="white_box",
      alpha=alpha, positions=np.arange(len(suspect)))


def test_higher_suspect_confidence_is_evidence_of_stealing():
  benign = np.linspace(0.05, 0.2, 10)
  suspect = benign + np.linspace(0.5, 0.7, 10)
  verdict = _test(suspect, _references(benign))
  assert verdict.stolen and verdict.test.p_value < 1e-3
  assert verdict.reference.p_value < 1e-3
  assert verdict.test.delta_p == pytest.approx(0.6)
  # One-sided: the same gap the other way round is no evidence at all.
  reverse = _test(benign, _references(suspect))
  assert not reverse.stolen and reverse.test.p_value > 0.99


def test_a_suspect_within_the_references_spread_is_not_accused():
  # The paired test's failure on independent models: the suspect sits
  # above B on every image, but benign references vary as much.
  benign = np.full(10, 0.10) + np.linspace(0, 0.01, 10)
  suspect = benign + 0.08
  verdict = _test(suspect, _references(benign, (0.0, 0.05, 0.12, -0.03,
                                                0.09, 0.02)))
  assert verdict.test.rejects(0.01)
  assert not verdict.reference.rejects(0.01) and not verdict.stolen
  assert verdict.p_value == verdict.reference.p_value > 0.01


def test_model_score_is_the_logit_of_the_mean_confidence():
  assert verification.model_score(np.array([0.2, 0.6])) == pytest.approx(
      math.log(0.4 / 0.6))
  # Saturated confidences stay finite.
  assert verification.model_score(np.ones(5)) == pytest.approx(
      math.log((1 - verification.EPS) / verification.EPS))


def test_the_pairing_matters():
  # Unpaired, these groups overlap; paired, every image moves up by ~0.05.
  rng = np.random.default_rng(0)
  benign = rng.uniform(0.0, 1.0, 10)
  suspect = np.clip(benign + 0.05 + rng.normal(0, 0.01, 10), 0, 1)
  assert _test(suspect, _references(benign)).test.rejects(0.01)
  unpaired = stats.ttest_ind(suspect, benign, equal_var=False,
                             alternative="greater")
  assert unpaired.pvalue > 0.3


def test_record_names_the_test_and_its_decision():
  record = _test(np.full(10, 0.9) + np.linspace(0, 0.05, 10),
                 _references(np.full(10, 0.1))).to_dict()
  assert record["decision"] == "reject_h0" and record["alpha"] == 0.01
  assert record["paired_p_value_definition"] == "sign_floored_ttest"
  assert record["p_value_definition"] == verification.P_VALUE_DEFINITION
  assert record["m"] == 10 and record["paired_log10_p"] < -2
  assert record["reference_log10_p"] < -2
  assert record["log10_p_value"] == max(record["paired_log10_p"],
                                        record["reference_log10_p"])
  assert "one-sided paired" in record["hypothesis"]
  assert "prediction t-test" in record["hypothesis"]


def test_sampled_rows_come_from_the_verification_rows():
  rows = np.array([3, 8, 9, 20, 31, 40])
  sample = verification.sample_positions(rows, 4, jax.random.PRNGKey(0))
  assert len(sample) == 4 and set(sample) <= set(rows)
  assert len(set(sample)) == 4
  with pytest.raises(ValueError, match="lower m"):
    verification.sample_positions(rows, 7, jax.random.PRNGKey(0))


def test_bad_alpha_is_refused():
  with pytest.raises(ValueError, match="alpha"):
    _test(np.full(3, 0.5), _references(np.full(3, 0.4)), alpha=1.5)


def test_one_reference_is_refused():
  with pytest.raises(ValueError, match="K >= 2"):
    _test(np.full(3, 0.5), _references(np.full(3, 0.4), (0.0,)))
