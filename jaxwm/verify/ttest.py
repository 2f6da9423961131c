"""One-sided paired t-test with a margin, for dataset ownership verification.

UBW paper, Section 4.2 (Proposition 1): for m test images x that the
suspect model classifies correctly, let P_b be the probability it gives the
benign image and P_m the probability it gives the watermarked image G(x)
(of the true label for an untargeted watermark). The owner tests

    H0: P_b <= P_m + tau    against    H1: P_b > P_m + tau

with a paired t-test on d_i = P_b,i - P_m,i - tau (m - 1 degrees of freedom)
and claims the model was trained on the protected dataset iff H0 is
rejected. The p-value is computed at the boundary P_b = P_m + tau, the least
favourable point of H0. The confidence score is Delta P = mean(P_b - P_m).

Degenerate inputs get their limiting answer, never NaN: when all differences
are equal (zero sample variance, up to floating-point rounding of values in
[0, 1]) the statistic is +inf, -inf or 0 as their mean lies above, below or
on the margin, giving p = :data:`P_VALUE_FLOOR`, 1 or 0.5. A p-value that
underflows is reported as :data:`P_VALUE_FLOOR`, never as exactly 0.0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

# The smallest positive normal float64 (2.2e-308): reported instead of a
# p-value that is 0 in the limit or underflows to 0.
P_VALUE_FLOOR = float(np.finfo(np.float64).tiny)
# Differences of values in [0, 1] closer than this are rounding noise.
_ROUNDING = 16 * float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class PairedTTestResult:
  """The outcome of :func:`paired_ttest`.

  Attributes:
    statistic: the t statistic mean(d) / (sd(d) / sqrt(m)), d = P_b - P_m -
      tau; +-inf or 0 when all differences are equal.
    p_value: P(T >= statistic) under H0, T ~ Student t with m - 1 degrees of
      freedom; in [P_VALUE_FLOOR, 1].
    delta_p: the confidence score Delta P = mean(P_b - P_m) in [-1, 1].
    m: the number of paired samples.
    tau: the margin.
  """

  statistic: float
  p_value: float
  delta_p: float
  m: int
  tau: float

  def rejects(self, alpha: float = 0.05) -> bool:
    """Whether H0 is rejected at significance level ``alpha``."""
    return self.p_value < alpha


def _check_tau(tau: float) -> float:
  tau = float(tau)
  if not 0.0 <= tau <= 1.0:
    raise ValueError(f"tau must be in [0, 1] (Proposition 1), got {tau}.")
  return tau


def ttest_differences(differences: np.ndarray,
                      tau: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
  """Batched core of :func:`paired_ttest`, on rows of paired differences.

  Args:
    differences: float [..., m], P_b - P_m per pair; m >= 2, finite.
    tau: the margin in [0, 1].

  Returns:
    (statistic [...], p_value [...]) as float64, as in
    :class:`PairedTTestResult`.
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
  degenerate = sd <= _ROUNDING
  with np.errstate(divide="ignore", invalid="ignore"):
    statistic = np.where(
        degenerate,
        np.where(np.abs(mean) <= _ROUNDING, 0.0, np.sign(mean) * np.inf),
        mean / (sd / np.sqrt(m)))
  p_value = np.maximum(stats.t.sf(statistic, df=m - 1), P_VALUE_FLOOR)
  return statistic, p_value


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
    alpha``.
  """
  p_benign = _probabilities(p_benign, "p_benign")
  p_marked = _probabilities(p_marked, "p_marked")
  if p_benign.shape != p_marked.shape:
    raise ValueError(
        f"p_benign and p_marked must be paired, got shapes {p_benign.shape} "
        f"and {p_marked.shape}.")
  differences = p_benign - p_marked
  statistic, p_value = ttest_differences(differences, tau)
  return PairedTTestResult(statistic=float(statistic),
                           p_value=float(p_value),
                           delta_p=float(differences.mean()),
                           m=int(differences.size), tau=float(tau))
