"""Tests of the one-sided paired t-test with margin (UBW paper, Section 4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jaxwm.verify import ttest


def test_hand_worked_example():
  # d = (0.8, 0.5, 0.5) - 0.25 = (0.55, 0.25, 0.25): mean 0.35, sd sqrt(0.03),
  # t = 0.35 / (sqrt(0.03) / sqrt(3)) = 3.5; with 2 degrees of freedom
  # P(T >= t) = (1 - t / sqrt(t^2 + 2)) / 2.
  result = ttest.paired_ttest([0.9, 0.8, 0.7], [0.1, 0.3, 0.2], tau=0.25)
  assert result.statistic == pytest.approx(3.5)
  assert result.p_value == pytest.approx((1 - 3.5 / np.sqrt(14.25)) / 2)
  assert result.delta_p == pytest.approx(0.6)
  assert (result.m, result.tau) == (3, 0.25)
  assert result.rejects(0.05) and not result.rejects(0.01)


def test_agrees_with_scipy_paired_ttest():
  rng = np.random.default_rng(0)
  p_benign = rng.uniform(0.5, 1.0, 50)
  p_marked = rng.uniform(0.0, 0.6, 50)
  for tau in (0.0, 0.25, 0.6):
    result = ttest.paired_ttest(p_benign, p_marked, tau)
    expected = stats.ttest_rel(p_benign - tau, p_marked,
                               alternative="greater")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


@pytest.mark.parametrize("p_marked,statistic,p_value", [
    ([0.1, 0.1, 0.1], np.inf, ttest.P_VALUE_FLOOR),   # every d = 0.55 > 0
    ([0.65, 0.65, 0.65], 0.0, 0.5),                   # d = 0 (up to rounding)
    ([0.9, 0.9, 0.9], -np.inf, 1.0)])                 # every d = -0.25
def test_equal_differences_give_the_limiting_answer(p_marked, statistic,
                                                    p_value):
  result = ttest.paired_ttest([0.9, 0.9, 0.9], p_marked, tau=0.25)
  assert result.statistic == statistic
  assert result.p_value == p_value
  assert result.p_value > 0 and not np.isnan(result.p_value)


def test_underflowing_p_value_is_floored_not_zero():
  rng = np.random.default_rng(1)
  p_marked = rng.uniform(0.0, 1e-3, 200)
  result = ttest.paired_ttest(np.ones(200) - 1e-4, p_marked, tau=0.25)
  assert stats.t.sf(result.statistic, 199) == 0.0
  assert result.p_value == ttest.P_VALUE_FLOOR > 0


@pytest.mark.parametrize("p_benign,p_marked,tau,message", [
    ([0.9], [0.1], 0.25, "m >= 2"),
    ([0.9, np.nan], [0.1, 0.2], 0.25, r"p_benign\[1\] = nan"),
    ([0.9, 0.8], [0.1, 1.2], 0.25, r"p_marked\[1\] = 1.2"),
    ([0.9, 0.8], [-0.1, 0.2], 0.25, "not a probability"),
    ([0.9, 0.8], [0.1, 0.2, 0.3], 0.25, "paired"),
    ([[0.9, 0.8]], [[0.1, 0.2]], 0.25, "1-D"),
    ([0.9, 0.8], [0.1, 0.2], 1.5, "tau")])
def test_bad_inputs_raise_clear_errors(p_benign, p_marked, tau, message):
  with pytest.raises(ValueError, match=message):
    ttest.paired_ttest(p_benign, p_marked, tau)


def test_batched_core_matches_the_single_test():
  rng = np.random.default_rng(2)
  differences = rng.uniform(-0.2, 0.8, (5, 30))
  statistic, p_value = ttest.ttest_differences(differences, 0.25)
  assert statistic.shape == p_value.shape == (5,)
  for row in range(5):
    result = ttest.paired_ttest(differences[row] + 0.2,
                                np.full(30, 0.2), 0.25)
    assert result.p_value == pytest.approx(p_value[row])
  with pytest.raises(ValueError, match="NaN or inf"):
    ttest.ttest_differences([[0.1, np.inf]], 0.25)


@pytest.mark.parametrize("m", [10, 100])
@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.4])
def test_calibrated_under_the_null(m, sigma):
  """Differences with mean exactly tau: size alpha and uniform p-values."""
  tau = 0.25
  rng = np.random.default_rng(1000 * m + int(sigma * 100))
  differences = tau + sigma * rng.standard_normal((20_000, m))
  _, p_values = ttest.ttest_differences(differences, tau)
  assert abs(np.mean(p_values < 0.05) - 0.05) <= 0.006
  assert stats.kstest(p_values, "uniform").pvalue > 0.01
