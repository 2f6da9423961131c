"""One-sided paired t-test with a margin, for dataset ownership verification.

UBW paper, Section 4.2 (Proposition 1): for m test images x that the
suspect model classifies correctly, let P_b be the probability it gives the
benign image and P_m the probability it gives the watermarked image G(x)
(of the true label for an untargeted watermark). The owner tests

    H0: P_b <= P_m + tau    against    H1: P_b > P_m + tau

with a paired t-test on d_i = P_b,i - P_m,i - tau (m - 1 degrees of freedom)
and claims the model was trained on the protected dataset iff H0 is
rejected. The t-test's p-value p_t = P(T >= t) is computed at the boundary
P_b = P_m + tau, the least favourable point of H0. The confidence score is
Delta P = mean(P_b - P_m).

The sign-floored p-value (jaxwm's definition, not the paper's; named
:data:`SIGN_FLOORED` in results): the p-value that jaxwm reports and
decides by is

    p = max(p_t, 2^-m),

where 2^-m is the exact one-sided sign test's p-value P[B >= m],
B ~ Binomial(m, 1/2), when every difference exceeds the margin: the
smallest p-value that m pairs can give without assuming the differences
are normal. Two problems of the plain t-test motivate it:

* When all differences are equal (zero sample variance, up to the
  floating-point rounding of values in [0, 1], e.g. a model whose
  probabilities saturate at 1 and 0) t is +-inf or 0/0 and the t-test is
  undefined. jaxwm then gives the exact sign test's answer: 2^-m when the
  differences lie above the margin, 1 when they lie below it or on it (no
  difference exceeds the margin).
* Near that case p_t is not robust: two pairs with equal differences
  would give p_t -> 0, and moving one probability by 1e-6 gives p_t ~ 1e-7;
  for m = 100 such tiny spreads give p_t far below 1e-300. Flooring at
  2^-m makes the p-value continuous there: a perturbation of one value
  changes it by less than a factor of 10 (``tests/verify/test_ttest.py``).

``max(p_t, c)`` is a valid (conservative) p-value for any constant c, and
at any alpha > 2^-m (for m = 100, alpha > 7.9e-31; for m = 30, alpha >
9.3e-10) it rejects H0 exactly when the paper's t-test does. Only
p-values below 2^-m differ from the paper's; the result's
``ttest_log10_p_value`` keeps the paper's t-test value, unfloored, for a
comparison with its tables.

Where 2^-m is below the smallest normal double (m > 1022) ``p_value`` is
clipped to :data:`P_VALUE_FLOOR`, never 0.0; ``log10_p_value`` is exact in
every case, also where p_t underflows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from jaxwm.verify.levels import DEFAULT_ALPHA

# The smallest positive normal float64 (2.2e-308): ``p_value`` never goes
# below it (it matters only for m > 1022, where 2^-m is smaller).
P_VALUE_FLOOR = float(np.finfo(np.float64).tiny)
# Differences of values in [0, 1] closer than this are rounding noise.
_ROUNDING = 16 * float(np.finfo(np.float64).eps)
_LN10 = math.log(10.0)
# The name of the p-value definition, as results record it.
SIGN_FLOORED = "sign_floored_ttest"


@dataclasses.dataclass(frozen=True)
class PairedTTestResult:
  """The outcome of :func:`paired_ttest`; every number is finite.

  Attributes:
    statistic: the t statistic mean(d) / (sd(d) / sqrt(m)), d = P_b - P_m -
      tau; None where all differences are equal (the t-test is undefined).
    dof: the t-test's degrees of freedom, m - 1.
    p_value: the sign-floored p-value max(p_t, 2^-m) of the module
      docstring, in [max(2^-m, P_VALUE_FLOOR), 1]; H0 is rejected below
      alpha.
    log10_p_value: log10 of max(p_t, 2^-m), exact (not clipped).
    ttest_log10_p_value: log10 of the paper's t-test p-value p_t =
      P(T >= statistic), T ~ Student t with ``dof`` degrees of freedom,
      exact even far below 1e-308; None where ``statistic`` is None.
    delta_p: the confidence score Delta P = mean(P_b - P_m) in [-1, 1].
    m: the number of paired samples.
    tau: the margin.
    p_value_definition: :data:`SIGN_FLOORED`, naming ``p_value``'s
      definition (jaxwm's, not the paper's).
  """

  statistic: float | None
  dof: int
  p_value: float
  log10_p_value: float
  ttest_log10_p_value: float | None
  delta_p: float
  m: int
  tau: float
  p_value_definition: str = SIGN_FLOORED

  def rejects(self, alpha: float = DEFAULT_ALPHA) -> bool:
    """Whether H0 is rejected at significance level ``alpha``."""
    return self.p_value < alpha


class DifferencesTest(NamedTuple):
  """Batched outcome of :func:`ttest_differences`, float64 arrays [...].

  Attributes:
    statistic: t; +inf, -inf or 0 where all differences of a row are equal
      and lie above, below or on the margin (there ``defined`` is False).
    defined: bool, whether the row's differences have positive spread.
    p_value: as :attr:`PairedTTestResult.p_value`.
    log10_p_value: as :attr:`PairedTTestResult.log10_p_value`.
    ttest_log10_p_value: as :attr:`PairedTTestResult.ttest_log10_p_value`;
      where ``defined`` is False, -inf above the margin and 0 below it or
      on it (the answers of the module docstring).
  """

  statistic: np.ndarray
  defined: np.ndarray
  p_value: np.ndarray
  log10_p_value: np.ndarray
  ttest_log10_p_value: np.ndarray


def _check_tau(tau: float) -> float:
  tau = float(tau)
  if not 0.0 <= tau <= 1.0:
    raise ValueError(f"tau must be in [0, 1] (Proposition 1), got {tau}.")
  return tau


def t_log_sf(statistic: np.ndarray, dof: float) -> np.ndarray:
  """ln P(T >= t), T ~ Student t with ``dof`` degrees of freedom, exact
  also where SciPy's ``logsf`` underflows to -inf (t >> 1).

  There P(T >= t) = I_x(a, 1/2) / 2 with x = dof / (dof + t^2), a = dof / 2,
  and I_x(a, b) = x^a (1 - x)^b 2F1(a + b, 1; a + 1; x) / (a B(a, b))
  (Abramowitz and Stegun 26.5.23 with 15.1.1), all in logarithms.
  """
  log_sf = np.array(stats.t.logsf(statistic, dof), np.float64)
  deep = np.isneginf(log_sf) & np.isfinite(statistic)
  if np.any(deep):
    t = np.abs(statistic[deep])
    a = dof / 2.0
    log_x = math.log(dof) - 2.0 * np.log(t) - np.log1p(dof / t / t)
    x = np.exp(log_x)
    log_sf[deep] = (math.log(0.5) + a * log_x + 0.5 * np.log1p(-x) -
                    math.log(a) - special.betaln(a, 0.5) +
                    np.log(special.hyp2f1(a + 0.5, 1.0, a + 1.0, x)))
  return log_sf


def ttest_differences(differences: np.ndarray,
                      tau: float = 0.25) -> DifferencesTest:
  """Batched core of :func:`paired_ttest`, on rows of paired differences.

  Args:
    differences: float [..., m], P_b - P_m per pair; m >= 2, finite.
    tau: the margin in [0, 1].

  Returns:
    A DifferencesTest of float64 arrays [...]; row r gives the numbers of
    :func:`paired_ttest` on the pairs with differences ``differences[r]``.
  """
  tau = _check_tau(tau)
  d = np.asarray(differences, np.float64) - tau
  m = d.shape[-1] if d.ndim else 0
  if m < 2:
    raise ValueError(
        f"a paired t-test needs m >= 2 pairs, got {m}; sample more images.")
  if not np.all(np.isfinite(d)):
    raise ValueError("differences contain NaN or inf; pass finite values.")
  mean = d.mean(axis=-1)
  sd = d.std(axis=-1, ddof=1)
  defined = sd > _ROUNDING
  above = mean > _ROUNDING
  with np.errstate(divide="ignore", invalid="ignore"):
    statistic = np.where(
        defined, mean / (sd / np.sqrt(m)),
        np.where(above, np.inf, np.where(mean < -_ROUNDING, -np.inf, 0.0)))
  # Zero spread: p_t's limit 0 above the margin, and 1 below it or on it
  # (the exact sign test's answer; on the margin t = 0/0 has no limit).
  ttest_log_p = np.where(defined, t_log_sf(np.where(defined, statistic, 0.0),
                                            m - 1),
                         np.where(above, -np.inf, 0.0))
  log_p = np.maximum(ttest_log_p, -m * math.log(2.0))
  p_value = np.maximum(np.maximum(np.exp(ttest_log_p), np.ldexp(1.0, -m)),
                       P_VALUE_FLOOR)
  return DifferencesTest(statistic, defined, p_value, log_p / _LN10,
                         ttest_log_p / _LN10)


def _probabilities(values: np.ndarray, name: str) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if values.ndim != 1:
    raise ValueError(f"{name} must be a 1-D array [m], got shape "
                     f"{values.shape}.")
  bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
  if bad.size:
    raise ValueError(
        f"{name}[{bad[0]}] = {values[bad[0]]} is not a probability; "
        f"{bad.size} value(s) lie outside [0, 1] or are NaN. Pass the "
        "model's predicted probabilities, not logits.")
  return values


def paired_ttest(p_benign: np.ndarray, p_marked: np.ndarray,
                 tau: float = 0.25) -> PairedTTestResult:
  """Tests H0: P_b <= P_m + tau against H1: P_b > P_m + tau (Section 4.2).

  Args:
    p_benign: float [m] in [0, 1], P_b: the probabilities on benign images.
    p_marked: float [m] in [0, 1], P_m: the same on their watermarked
      versions.
    tau: the margin (the paper's certainty tau, 0.25 in Section 5.3).

  Returns:
    A PairedTTestResult; reject H0 (claim ownership) when ``p_value <
    alpha`` (the sign-floored p-value of the module docstring).
  """
  p_benign = _probabilities(p_benign, "p_benign")
  p_marked = _probabilities(p_marked, "p_marked")
  if p_benign.shape != p_marked.shape:
    raise ValueError(
        f"p_benign and p_marked must be paired, got shapes {p_benign.shape} "
        f"and {p_marked.shape}.")
  differences = p_benign - p_marked
  test = ttest_differences(differences, tau)
  defined = bool(test.defined)
  return PairedTTestResult(
      statistic=float(test.statistic) if defined else None,
      dof=int(differences.size - 1),
      p_value=float(test.p_value),
      log10_p_value=float(test.log10_p_value),
      ttest_log10_p_value=(float(test.ttest_log10_p_value) if defined
                           else None),
      delta_p=float(differences.mean()),
      m=int(differences.size), tau=float(tau))
