"""The false-acceptance experiment: the exact size of the binomial test."""

import pytest
from scipy import stats

from jaxwm.recipes import false_acceptance


def test_exact_size_hand_worked():
  # n = 100, K = 10: P[X >= 18] = 0.01001 > 0.01, so Verify accepts from 19
  # agreements on and its size is P[X >= 19].
  assert stats.binom.sf(17, 100, 0.1) > 0.01
  assert false_acceptance.exact_size(100, 0.1, 0.01) == pytest.approx(
      stats.binom.sf(18, 100, 0.1), rel=1e-12)
  # n = 10, chance 1/2: P[X >= 10] = 2^-10 is the only tail below 0.005.
  assert false_acceptance.exact_size(10, 0.5, 0.005) == pytest.approx(2**-10)
  assert false_acceptance.exact_size(3, 0.5, 0.1) == 0.0


def test_exact_size_of_the_paper_rule_hand_worked():
  # n = 10 at chance 1/2, eps = 0.1: at most 1 disagreement, so
  # P[X >= 9] = (10 + 1) / 1024.
  assert false_acceptance.exact_size_threshold(10, 0.5, 0.1) == (
      pytest.approx(11 / 1024, rel=1e-12))
  # n = 100, K = 10, eps = 0.1: P[X >= 90], about 6e-78.
  assert false_acceptance.exact_size_threshold(100, 0.1, 0.1) == (
      pytest.approx(stats.binom.sf(89, 100, 0.1), rel=1e-12))
  assert false_acceptance.exact_size_threshold(100, 0.1, 0.0) == (
      pytest.approx(1e-100, rel=1e-9))
