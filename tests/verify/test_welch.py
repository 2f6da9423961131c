"""The one-sided Welch t-test and its rank floor."""

import math

import numpy as np
import pytest
from scipy import special, stats

from jaxwm.verify.welch import welch_ttest


def test_matches_scipy_one_sided_welch():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0.3, 1.0, 30), rng.normal(0.0, 2.0, 20)
  result = welch_ttest(a, b)
  expected = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
  assert result.statistic == pytest.approx(expected.statistic)
  assert result.dof == pytest.approx(expected.df)
  assert result.p_value == pytest.approx(expected.pvalue)
  assert result.delta_p == pytest.approx(a.mean() - b.mean())
  assert (result.m, result.m_other) == (30, 20)


def test_separated_samples_floor_at_the_rank_tests_smallest_p():
  a = 1.0 + 1e-9 * np.arange(10)
  b = -1.0 - 1e-9 * np.arange(10)
  result = welch_ttest(a, b)
  floor = 1.0 / special.comb(20, 10, exact=True)
  assert result.p_value == pytest.approx(floor)
  assert result.log10_p_value == pytest.approx(math.log10(floor))
  assert result.ttest_log10_p_value < result.log10_p_value


@pytest.mark.parametrize("shift,expected", [(1.0, "floor"), (-1.0, 1.0),
                                            (0.0, 1.0)])
def test_zero_spread_gives_the_rank_tests_answer(shift, expected):
  result = welch_ttest(np.full(5, shift), np.zeros(5))
  floor = 1.0 / special.comb(10, 5, exact=True)
  assert result.statistic is None
  assert result.p_value == pytest.approx(
      floor if expected == "floor" else expected)
  assert np.isfinite(result.log10_p_value) and result.p_value > 0


def test_bad_samples_are_refused():
  with pytest.raises(ValueError, match="at least 2"):
    welch_ttest(np.ones(1), np.ones(3))
  with pytest.raises(ValueError, match="NaN"):
    welch_ttest(np.array([0.0, np.nan]), np.ones(3))
