"""Tests of the one-sided paired t-test with margin (UBW paper, Section 4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jaxwm.verify import ttest


def test_hand_worked_example():
  # d = (0.8, 0.5, 0.5) - 0.25 = (0.55, 0.25, 0.25): mean 0.35, sd sqrt(0.03),
  # t = 0.35 / (sqrt(0.03) / sqrt(3)) = 3.5; with 2 degrees of freedom
  # p_t = P(T >= t) = (1 - t / sqrt(t^2 + 2)) / 2 = 0.036, below the floor
  # 2^-3 of three pairs, so p = 1/8.
  result = ttest.paired_ttest([0.9, 0.8, 0.7], [0.1, 0.3, 0.2], tau=0.25)
  p_t = (1 - 3.5 / np.sqrt(14.25)) / 2
  assert result.statistic == pytest.approx(3.5)
  assert result.dof == 2
  assert result.ttest_log10_p_value == pytest.approx(np.log10(p_t))
  assert result.p_value == pytest.approx(1 / 8)
  assert result.log10_p_value == pytest.approx(np.log10(1 / 8))
  assert result.delta_p == pytest.approx(0.6)
  assert (result.m, result.tau) == (3, 0.25)
  assert result.p_value_definition == ttest.SIGN_FLOORED
  assert result.rejects(0.2) and not result.rejects(0.1)


def test_agrees_with_scipy_paired_ttest_above_the_floor():
  rng = np.random.default_rng(0)
  p_benign = rng.uniform(0.5, 1.0, 50)
  p_marked = rng.uniform(0.0, 0.6, 50)
  for tau in (0.0, 0.25, 0.6):
    result = ttest.paired_ttest(p_benign, p_marked, tau)
    expected = stats.ttest_rel(p_benign - tau, p_marked,
                               alternative="greater")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.dof == expected.df == 49
    assert result.ttest_log10_p_value == pytest.approx(
        np.log10(expected.pvalue))
    assert result.p_value == pytest.approx(max(expected.pvalue, 2.0**-50))
  # tau = 0: p_t = 9.7e-17 lies below 2^-50, so the floor decides.
  assert ttest.paired_ttest(p_benign, p_marked, 0.0).p_value == 2.0**-50


@pytest.mark.parametrize("m", [2, 3, 30, 100])
@pytest.mark.parametrize("p_marked,p_value", [
    (0.1, lambda m: 2.0**-m),   # every d = 0.55 > 0: the sign test's 2^-m
    (0.65, lambda m: 1.0),      # d = 0 (up to rounding): none exceeds 0
    (0.9, lambda m: 1.0)])      # every d = -0.25
def test_equal_differences_give_the_exact_sign_test(m, p_marked, p_value):
  result = ttest.paired_ttest(np.full(m, 0.9), np.full(m, p_marked), 0.25)
  assert result.statistic is None and result.ttest_log10_p_value is None
  assert result.p_value == pytest.approx(p_value(m), rel=1e-12)
  assert result.log10_p_value == pytest.approx(np.log10(p_value(m)),
                                               abs=1e-12)
  assert result.dof == m - 1


@pytest.mark.parametrize("m", [2, 3, 30, 100])
@pytest.mark.parametrize("p_marked", [0.1, 0.65, 0.9])
@pytest.mark.parametrize("change", [1e-6, -1e-6, 1e-9, -1e-9])
def test_p_value_is_continuous_near_equal_differences(m, p_marked, change):
  """Moving one probability by 1e-6 or 1e-9 moves log10 p by less than 1."""
  p_benign = np.full(m, 0.9)
  exact = ttest.paired_ttest(p_benign, np.full(m, p_marked), 0.25)
  moved = np.full(m, p_marked)
  moved[0] += change
  perturbed = ttest.paired_ttest(p_benign, moved, 0.25)
  assert perturbed.statistic is not None
  assert abs(perturbed.log10_p_value - exact.log10_p_value) < 1.0
  assert abs(np.log10(perturbed.p_value / exact.p_value)) < 1.0


def test_log10_p_value_is_exact_where_the_t_tail_underflows():
  mpmath = pytest.importorskip("mpmath")
  mpmath.mp.dps = 40
  rng = np.random.default_rng(1)
  p_marked = rng.uniform(0.0, 1e-3, 200)
  result = ttest.paired_ttest(np.ones(200) - 1e-4, p_marked, tau=0.25)
  assert stats.t.sf(result.statistic, 199) == 0.0
  t, dof = mpmath.mpf(result.statistic), mpmath.mpf(result.dof)
  expected = mpmath.log10(mpmath.betainc(dof / 2, 0.5, 0, dof / (dof + t**2),
                                         regularized=True) / 2)
  assert result.ttest_log10_p_value == pytest.approx(float(expected),
                                                     rel=1e-12)
  # The floor 2^-200 = 6e-61 is what p reports; it never reaches 0.0.
  assert result.log10_p_value == pytest.approx(-200 * np.log10(2))
  assert result.p_value == pytest.approx(2.0**-200)


def test_p_value_never_reaches_zero_for_huge_m():
  m = 1500  # 2^-1500 is below the smallest double
  result = ttest.paired_ttest(np.full(m, 0.9), np.full(m, 0.1), 0.25)
  assert result.p_value == ttest.P_VALUE_FLOOR > 0
  assert result.log10_p_value == pytest.approx(-m * np.log10(2))


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
  differences[3] = 0.7  # a row of equal differences
  batch = ttest.ttest_differences(differences, 0.25)
  for field in batch:
    assert field.shape == (5,)
  for row in range(5):
    result = ttest.paired_ttest(differences[row] + 0.2,
                                np.full(30, 0.2), 0.25)
    assert result.p_value == pytest.approx(batch.p_value[row])
    assert result.log10_p_value == pytest.approx(batch.log10_p_value[row])
    assert (result.statistic is None) == (not batch.defined[row])
    if result.statistic is not None:
      assert result.statistic == pytest.approx(batch.statistic[row])
      assert result.ttest_log10_p_value == pytest.approx(
          batch.ttest_log10_p_value[row])
  with pytest.raises(ValueError, match="NaN or inf"):
    ttest.ttest_differences([[0.1, np.inf]], 0.25)


@pytest.mark.parametrize("m", [10, 100])
@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.4])
def test_calibrated_under_the_null(m, sigma):
  """Differences with mean exactly tau: size alpha and uniform p-values."""
  tau = 0.25
  rng = np.random.default_rng(1000 * m + int(sigma * 100))
  differences = tau + sigma * rng.standard_normal((20_000, m))
  p_values = ttest.ttest_differences(differences, tau).p_value
  assert abs(np.mean(p_values < 0.05) - 0.05) <= 0.006
  assert stats.kstest(p_values, "uniform").pvalue > 0.01
