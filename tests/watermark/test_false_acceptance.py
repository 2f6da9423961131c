"""The false-acceptance experiment: the exact size of the binomial test."""

import pytest
from scipy import stats

from jaxwm.watermark import false_acceptance


def test_exact_size_hand_worked():
  # n = 100, K = 10: P[X >= 18] = 0.01001 > 0.01, so Verify accepts from 19
  # agreements on and its size is P[X >= 19].
  assert stats.binom.sf(17, 100, 0.1) > 0.01
  assert false_acceptance.exact_size(100, 0.1, 0.01) == pytest.approx(
      stats.binom.sf(18, 100, 0.1), rel=1e-12)
  # n = 10, chance 1/2: P[X >= 10] = 2^-10 is the only tail below 0.005.
  assert false_acceptance.exact_size(10, 0.5, 0.005) == pytest.approx(2**-10)
  assert false_acceptance.exact_size(3, 0.5, 0.1) == 0.0
