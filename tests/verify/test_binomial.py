"""Tests of jaxwm.verify.binomial against hand-worked binomial tails."""

import math

import pytest
from scipy import stats

from jaxwm.verify.binomial import SMALLEST_P_VALUE, binomial_test


def test_hand_worked_tails():
  # P[X >= 2], X ~ Bin(3, 1/2) = (3 + 1) / 8.
  assert binomial_test(2, 3, 0.5).p_value == pytest.approx(0.5, rel=1e-12)
  # P[X >= 10], X ~ Bin(10, 0.1) = 0.1^10.
  result = binomial_test(10, 10, 0.1)
  assert result.p_value == pytest.approx(1e-10, rel=1e-12)
  assert result.log10_p_value == pytest.approx(-10.0, abs=1e-12)
  # P[X >= 1], X ~ Bin(4, 0.25) = 1 - 0.75^4.
  assert binomial_test(1, 4, 0.25).p_value == pytest.approx(
      1 - 0.75**4, rel=1e-12)


def test_zero_successes_has_p_value_one():
  result = binomial_test(0, 100, 0.1)
  assert result.p_value == 1.0 and result.log10_p_value == 0.0


@pytest.mark.parametrize("successes", [5, 10, 15, 30])
def test_matches_scipy_binomtest_greater(successes):
  expected = stats.binomtest(successes, 100, 0.1, alternative="greater").pvalue
  result = binomial_test(successes, 100, 0.1)
  assert result.p_value == pytest.approx(expected, rel=1e-9)
  assert result.log10_p_value == pytest.approx(math.log10(expected), rel=1e-9)


def test_underflow_is_clipped_never_zero_and_log_stays_exact():
  # P[X >= 400], X ~ Bin(400, 1/1000) = 10^-1200, below the float64 range.
  result = binomial_test(400, 400, 0.001)
  assert result.p_value == SMALLEST_P_VALUE > 0.0
  assert result.log10_p_value == pytest.approx(-1200.0, rel=1e-12)


def test_result_is_frozen():
  result = binomial_test(1, 2, 0.5)
  with pytest.raises(AttributeError):
    result.p_value = 0.0


@pytest.mark.parametrize("args, match", [
    ((5, 4, 0.5), "successes must be in"),
    ((-1, 4, 0.5), "successes must be in"),
    ((1, 0, 0.5), "trials must be >= 1"),
    ((1, 4, 0.0), "1 / K"),
    ((1, 4, 1.0), "1 / K"),
])
def test_bad_arguments_raise(args, match):
  with pytest.raises(ValueError, match=match):
    binomial_test(*args)


def test_non_integer_counts_raise():
  with pytest.raises(TypeError, match="successes must be an integer"):
    binomial_test(1.5, 4, 0.5)
  with pytest.raises(TypeError, match="trials must be an integer"):
    binomial_test(1, True, 0.5)
