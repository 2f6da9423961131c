"""The one-sided prediction t-test of a model's score against references."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxwm.verify import reference_ttest
from jaxwm.verify.ttest import P_VALUE_FLOOR


def test_statistic_and_p_value_are_the_prediction_t_test():
  references = np.array([-2.1, -1.7, -2.4, -1.9, -2.0])
  result = reference_ttest(0.5, references)
  k = len(references)
  expected = (0.5 - references.mean()) / (
      references.std(ddof=1) * math.sqrt(1 + 1 / k))
  assert result.statistic == pytest.approx(expected)
  assert result.dof == k - 1 and result.num_references == k
  assert result.p_value == pytest.approx(stats.t.sf(expected, k - 1))
  assert result.log10_p_value == pytest.approx(
      math.log10(stats.t.sf(expected, k - 1)))
  assert result.rejects(0.01)
  # One-sided: as far below the references is no evidence.
  below = reference_ttest(2 * references.mean() - 0.5, references)
  assert below.p_value == pytest.approx(1 - result.p_value)
  assert not below.rejects(0.01)


def test_size_holds_when_the_suspect_is_one_more_reference():
  # Suspect and references all drawn from one normal distribution: the
  # test must reject at its level, whatever the mean and spread.
  rng = np.random.default_rng(0)
  draws = rng.normal(3.0, 0.7, size=(4000, 9))
  rejected = [reference_ttest(row[0], row[1:]).rejects(0.05) for row in draws]
  # Binomial(4000, 0.05): standard deviation 0.0034.
  assert 0.04 <= np.mean(rejected) <= 0.06


def test_spread_between_models_is_what_counts():
  # A suspect 0.3 above the references' mean is ordinary when they spread
  # by 0.3 and extraordinary when they spread by 0.01.
  rng = np.random.default_rng(1)
  noise = rng.normal(size=8)
  wide = reference_ttest(0.3, 0.3 * noise / noise.std(ddof=1))
  narrow = reference_ttest(0.3, 0.01 * noise / noise.std(ddof=1))
  assert wide.p_value > 0.1 and narrow.p_value < 1e-6


def test_far_outliers_get_a_positive_p_value_and_an_exact_logarithm():
  result = reference_ttest(1e20, np.arange(30.0))
  assert result.p_value == P_VALUE_FLOOR
  assert math.isfinite(result.log10_p_value) and result.log10_p_value < -500


@pytest.mark.parametrize("suspect, references, message", [
    (0.0, [1.0], "at least 2"),
    (0.0, [[1.0, 2.0]], "at least 2"),
    (float("nan"), [1.0, 2.0], "finite"),
    (0.0, [1.0, float("inf")], "finite"),
    (0.0, [1.0, 1.0, 1.0], "spread"),
])
def test_bad_scores_are_refused(suspect, references, message):
  with pytest.raises(ValueError, match=message):
    reference_ttest(suspect, np.asarray(references))
