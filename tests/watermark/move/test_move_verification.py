"""The one-sided paired t-test on the meta-classifier's confidences."""

import jax
import numpy as np
import pytest
from scipy import stats

from jaxwm.watermark.move import verification


def _test(suspect, benign, alpha=0.01):
  return verification.ownership_test(
      np.asarray(suspect), np.asarray(benign), setting="white_box",
      alpha=alpha, positions=np.arange(len(suspect)))


def test_higher_suspect_confidence_is_evidence_of_stealing():
  benign = np.linspace(0.05, 0.2, 10)
  suspect = benign + np.linspace(0.5, 0.7, 10)
  verdict = _test(suspect, benign)
  assert verdict.stolen and verdict.test.p_value < 1e-3
  assert verdict.test.delta_p == pytest.approx(0.6)
  # One-sided: the same gap the other way round is no evidence at all.
  reverse = _test(benign, suspect)
  assert not reverse.stolen and reverse.test.p_value > 0.99


def test_the_pairing_matters():
  # Unpaired, these groups overlap; paired, every image moves up by ~0.05.
  rng = np.random.default_rng(0)
  benign = rng.uniform(0.0, 1.0, 10)
  suspect = np.clip(benign + 0.05 + rng.normal(0, 0.01, 10), 0, 1)
  assert _test(suspect, benign).stolen
  unpaired = stats.ttest_ind(suspect, benign, equal_var=False,
                             alternative="greater")
  assert unpaired.pvalue > 0.3


def test_record_names_the_test_and_its_decision():
  record = _test(np.full(10, 0.9) + np.linspace(0, 0.05, 10),
                 np.full(10, 0.1)).to_dict()
  assert record["decision"] == "stolen" and record["alpha"] == 0.01
  assert record["p_value_definition"] == "sign_floored_ttest"
  assert record["m"] == 10 and record["log10_p"] < -2
  assert "one-sided paired" in record["hypothesis"]


def test_sampled_rows_come_from_the_verification_rows():
  rows = np.array([3, 8, 9, 20, 31, 40])
  sample = verification.sample_positions(rows, 4, jax.random.PRNGKey(0))
  assert len(sample) == 4 and set(sample) <= set(rows)
  assert len(set(sample)) == 4
  with pytest.raises(ValueError, match="lower m"):
    verification.sample_positions(rows, 7, jax.random.PRNGKey(0))


def test_bad_alpha_is_refused():
  with pytest.raises(ValueError, match="alpha"):
    _test(np.full(3, 0.5), np.full(3, 0.4), alpha=1.5)
