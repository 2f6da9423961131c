"""Exact one-sided binomial test of agreement against chance.

Used for trigger-set watermarks (Adi et al., Section 3.1, Verify step 3): the
labels of a trigger set are drawn uniformly from K classes independently of
any model, so a model that was not marked agrees with ``successes`` of
``trials`` labels where ``successes ~ Binomial(trials, 1/K)`` exactly. The
test rejects this null hypothesis when agreement is improbably high.

The p-value ``P[X >= successes]`` is the binomial survival function
``sf(successes - 1)`` in float64. Where it underflows (e.g. 400 agreements at
chance 1/1000) it is clipped to the smallest positive double, 5e-324, so it is
never exactly 0.0; ``log10_p_value`` is exact in every case (a log-sum-exp of
the tail probabilities).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special, stats

SMALLEST_P_VALUE = float(np.finfo(np.float64).smallest_subnormal)


@dataclasses.dataclass(frozen=True)
class BinomialTest:
  """Result of :func:`binomial_test`.

  Attributes:
    successes: observed agreements, in [0, trials].
    trials: number of independent trials.
    chance: success probability under the null hypothesis, in (0, 1).
    p_value: P[X >= successes] for X ~ Binomial(trials, chance), in
      [5e-324, 1].
    log10_p_value: log10 of the unclipped p-value.
  """

  successes: int
  trials: int
  chance: float
  p_value: float
  log10_p_value: float


def _check_int(name: str, value) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)):
    raise TypeError(f"{name} must be an integer, got {value!r}.")
  return int(value)


def binomial_test(successes: int, trials: int, chance: float) -> BinomialTest:
  """One-sided exact binomial test, alternative: agreement above ``chance``.

  Args:
    successes: number of agreements observed.
    trials: number of trials (e.g. trigger images queried), >= 1.
    chance: agreement probability under the null, e.g. 1/K, in (0, 1).

  Returns:
    BinomialTest with p-value P[X >= successes], X ~ Binomial(trials, chance).
  """
  successes = _check_int("successes", successes)
  trials = _check_int("trials", trials)
  chance = float(chance)
  if trials < 1:
    raise ValueError(f"trials must be >= 1, got {trials}.")
  if not 0 <= successes <= trials:
    raise ValueError(
        f"successes must be in [0, trials] = [0, {trials}], got {successes}.")
  if not 0.0 < chance < 1.0:
    raise ValueError(
        f"chance must be in (0, 1), got {chance}; for K classes pass 1 / K.")
  if successes == 0:
    return BinomialTest(successes, trials, chance, 1.0, 0.0)
  tail = stats.binom.logpmf(np.arange(successes, trials + 1), trials, chance)
  log10_p = float(min(special.logsumexp(tail), 0.0) / math.log(10))
  p_value = float(stats.binom.sf(successes - 1, trials, chance))
  return BinomialTest(successes, trials, chance,
                      min(max(p_value, SMALLEST_P_VALUE), 1.0), log10_p)
