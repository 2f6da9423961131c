"""One-sided Welch t-test of two independent samples, for scores of two
groups (e.g. a regressor's confidences on private and on public samples).

For samples a (size n_a) and b (size n_b) with means A, B and unbiased
variances s_a^2, s_b^2, the test of

    H0: mu_a <= mu_b    against    H1: mu_a > mu_b

uses t = (A - B) / sqrt(s_a^2 / n_a + s_b^2 / n_b) with the
Welch-Satterthwaite degrees of freedom

    dof = (s_a^2/n_a + s_b^2/n_b)^2 /
          ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1)),

and p_t = P(T >= t), T ~ Student t with ``dof`` degrees of freedom
(SciPy's ``ttest_ind(a, b, equal_var=False, alternative="greater")``).

The rank-floored p-value (jaxwm's definition; named :data:`RANK_FLOORED`
in results), in the spirit of :mod:`jaxwm.verify.ttest`'s sign floor: the
p-value reported and decided by is

    p = max(p_t, 1 / C(n_a + n_b, n_a)),

where 1 / C(n_a + n_b, n_a) is the exact one-sided rank-sum
(Mann-Whitney) test's p-value when every a exceeds every b: the smallest
p-value the two samples can give without assuming normal scores. Where
both samples have zero spread (t undefined) the rank test's answer is
given: the floor when A > B, 1 otherwise. ``p_value`` is never below
:data:`jaxwm.verify.ttest.P_VALUE_FLOOR`; ``log10_p_value`` is exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special

from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.verify.ttest import P_VALUE_FLOOR
from jaxwm.verify.ttest import t_log_sf

# The name of the p-value definition, as results record it.
RANK_FLOORED = "rank_floored_welch_ttest"
# Standard errors below this (scores of order 1) are rounding noise.
_ROUNDING = 16 * float(np.finfo(np.float64).eps)
_LN10 = math.log(10.0)


@dataclasses.dataclass(frozen=True)
class WelchTTestResult:
  """The outcome of :func:`welch_ttest`; every number is finite.

  Attributes:
    statistic: Welch's t; None where both samples have zero spread.
    dof: the Welch-Satterthwaite degrees of freedom (a real number);
      n_a + n_b - 2 where ``statistic`` is None.
    p_value: the rank-floored p-value of the module docstring, in
      [max(1 / C(n_a + n_b, n_a), P_VALUE_FLOOR), 1].
    log10_p_value: log10 of the rank-floored p-value, exact.
    ttest_log10_p_value: log10 of Welch's p_t, unfloored; None where
      ``statistic`` is None.
    delta_p: mean(a) - mean(b).
    m: n_a, the size of the first sample.
    m_other: n_b, the size of the second.
    p_value_definition: :data:`RANK_FLOORED`.
  """

  statistic: float | None
  dof: float
  p_value: float
  log10_p_value: float
  ttest_log10_p_value: float | None
  delta_p: float
  m: int
  m_other: int
  p_value_definition: str = RANK_FLOORED

  def rejects(self, alpha: float = DEFAULT_ALPHA) -> bool:
    """Whether H0 is rejected at significance level ``alpha``."""
    return self.p_value < alpha


def _sample(values: np.ndarray, name: str) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size < 2:
    raise ValueError(f"{name} must be a 1-D array of at least 2 scores, "
                     f"got shape {values.shape}; sample more.")
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{name} holds NaN or inf; pass finite scores.")
  return values


def rank_floor_log(n_a: int, n_b: int) -> float:
  """ln(1 / C(n_a + n_b, n_a)), the rank-sum test's smallest p-value."""
  return float(special.gammaln(n_a + 1) + special.gammaln(n_b + 1) -
               special.gammaln(n_a + n_b + 1))


def welch_ttest(a: np.ndarray, b: np.ndarray) -> WelchTTestResult:
  """Tests H0: mu_a <= mu_b against H1: mu_a > mu_b (module docstring).

  Args:
    a: float [n_a], n_a >= 2, the scores expected to be higher under H1.
    b: float [n_b], n_b >= 2, independent of ``a``.

  Returns:
    A WelchTTestResult; reject H0 when ``p_value < alpha``.
  """
  a, b = _sample(a, "a"), _sample(b, "b")
  n_a, n_b = a.size, b.size
  var_a, var_b = a.var(ddof=1) / n_a, b.var(ddof=1) / n_b
  delta = float(a.mean() - b.mean())
  floor = rank_floor_log(n_a, n_b)
  standard_error = math.sqrt(var_a + var_b)
  if standard_error <= _ROUNDING:
    statistic, ttest_log_p = None, None
    dof = float(n_a + n_b - 2)
    log_p = floor if delta > _ROUNDING else 0.0
  else:
    statistic = delta / standard_error
    dof = float((var_a + var_b) ** 2 / (var_a ** 2 / (n_a - 1) +
                                        var_b ** 2 / (n_b - 1)))
    ttest_log_p = float(t_log_sf(np.array([statistic]), dof)[0])
    log_p = max(ttest_log_p, floor)
  return WelchTTestResult(
      statistic=statistic, dof=dof,
      p_value=max(math.exp(log_p), P_VALUE_FLOOR),
      log10_p_value=log_p / _LN10,
      ttest_log10_p_value=(None if ttest_log_p is None
                           else ttest_log_p / _LN10),
      delta_p=delta, m=n_a, m_other=n_b)
