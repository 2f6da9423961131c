"""MOVE's ownership verification (Section 5.4): the paper's one-sided paired
t-test, and a test over benign reference models that jaxwm adds.

For m transformed images x'_1..x'_m drawn from the key's verification rows
(never from the rows that trained the meta-classifier C), the owner computes
the meta-features of the suspect model S and of the benign model B on each
image (white-box: gradient signs; black-box: probability differences
against the benign version x_i, Definitions 3 and 4) and C's confidence in
the victim class for both:

    c_S,i = C(features_S(x'_i))_1,    c_B,i = C(features_B(x'_i))_1.

With mu_S and mu_B their expectations, the owner tests

    H0: mu_S <= mu_B    against    H1: mu_S > mu_B

by the single-tailed paired t-test on d_i = c_S,i - c_B,i (m - 1 degrees
of freedom) and claims S was stolen iff H0 is rejected at alpha (0.01 in
the paper; m = 10 white-box and 100 black-box). The confidence score is
Delta mu = mean(c_S - c_B). The test is :func:`jaxwm.verify.paired_ttest`
with margin 0, so its p-value is the sign-floored one named in the result
(jaxwm's definition; it differs from the paper's t-test only below 2^-m).

The paired test treats the images as the random sample and the two models
as fixed: it detects any systematic difference between C's scores of S and
of B, and two independently trained models always differ somewhat. Over
100 independent models of Fashion-MNIST it accused 30% (white-box) and 66%
(black-box) at alpha = 0.01. So jaxwm adds a test over models: K benign
reference models R_1..R_K, trained on the owner's data from other seeds and
never shown to C (B is the first), score

    score(M) = logit(mean_i c_M,i)    (c clipped to [1e-6, 1 - 1e-6])

on the same m images, and :func:`jaxwm.verify.reference_ttest` tests
whether S's score lies above theirs (a prediction t-test, K - 1 degrees of
freedom), a test whose size holds over suspects that are exchangeable with
the references. S is judged stolen iff both tests reject H0 at alpha (an
intersection-union test); its p-value, ``p_value``, is the larger of the
two, and each test's own is recorded.

One draw of m images gives one test. (The authors' code instead runs
Welch's unpaired two-sided test on 40 redraws and reports the harmonic mean
of the 40 p-values, which is not a valid p-value and accuses independent
models too often; repeated draws here are separate tests, to be reported as
the fraction rejected.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from scipy import special

from jaxwm.poison.poisoned_label import select_indices
from jaxwm.verify import reference as reference_lib
from jaxwm.verify.levels import decision
from jaxwm.verify.reference import ReferenceTestResult
from jaxwm.verify.ttest import PairedTTestResult
from jaxwm.verify.ttest import paired_ttest

HYPOTHESIS = ("H0: mu_S <= mu_B vs H1: mu_S > mu_B, one-sided paired t-test; "
              "and H0: S scores as benign reference models do vs H1: higher, "
              "one-sided prediction t-test; stolen iff both reject")
# The name of ``p_value``'s definition, as results record it.
P_VALUE_DEFINITION = "max(sign_floored_paired_ttest, reference_ttest)"
# Confidences are clipped to [EPS, 1 - EPS] before a model's score, the
# logit of their mean, is taken.
EPS = 1e-6


def model_score(confidence: np.ndarray) -> float:
  """A model's score for the test over models: logit(mean(confidence)).

  Args:
    confidence: float [m] in [0, 1], C's confidences in the victim class.
  """
  return float(special.logit(np.clip(
      np.mean(np.asarray(confidence, np.float64)), EPS, 1.0 - EPS)))


@dataclasses.dataclass(frozen=True)
class MoveVerdict:
  """The outcome of one MOVE verification.

  Attributes:
    setting: ``"white_box"`` or ``"black_box"``.
    test: the paired t-test on c_S - c_B (``delta_p`` is Delta mu).
    reference: the test of S's score against the K benign references'.
    alpha: the significance level.
    stolen: whether both tests reject H0 at ``alpha``.
    suspect_confidence: float64 [m], c_S.
    benign_confidence: float64 [m], c_B.
    reference_scores: float64 [K], the references' scores.
    positions: int64 [m], the key's verification rows used.
  """

  setting: str
  test: PairedTTestResult
  reference: ReferenceTestResult
  alpha: float
  stolen: bool
  suspect_confidence: np.ndarray
  benign_confidence: np.ndarray
  reference_scores: np.ndarray
  positions: np.ndarray

  @property
  def p_value(self) -> float:
    """The intersection-union test's p-value: the larger of the two."""
    return max(self.test.p_value, self.reference.p_value)

  @property
  def log10_p_value(self) -> float:
    """log10 of :attr:`p_value`, exact where the p-values underflow."""
    return max(self.test.log10_p_value, self.reference.log10_p_value)

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results."""
    return {
        "setting": self.setting, "hypothesis": HYPOTHESIS,
        "p_value": self.p_value, "log10_p_value": self.log10_p_value,
        "p_value_definition": P_VALUE_DEFINITION,
        "alpha": self.alpha,
        "decision": decision(self.stolen),
        "paired_statistic": self.test.statistic,
        "paired_p_value": self.test.p_value,
        "paired_log10_p": self.test.log10_p_value,
        "paired_ttest_log10_p": self.test.ttest_log10_p_value,
        "paired_p_value_definition": self.test.p_value_definition,
        "delta_mu": self.test.delta_p, "m": self.test.m,
        "mu_suspect": float(np.mean(self.suspect_confidence)),
        "mu_benign": float(np.mean(self.benign_confidence)),
        "reference_statistic": self.reference.statistic,
        "reference_p_value": self.reference.p_value,
        "reference_log10_p": self.reference.log10_p_value,
        "suspect_score": self.reference.suspect_score,
        "reference_scores": self.reference_scores.tolist(),
    }


def sample_positions(verification_positions: np.ndarray, m: int,
                     key: jax.Array) -> np.ndarray:
  """m distinct verification rows, uniformly at random, sorted.

  Args:
    verification_positions: int [P], the key's verification rows.
    m: the sample size, 2 <= m <= P.
    key: jax.random key.
  """
  verification_positions = np.asarray(verification_positions, np.int64)
  check_sample_size(m, verification_positions.size)
  return select_indices(verification_positions, m, key)


def check_sample_size(m: int, available: int) -> None:
  """Raises ValueError unless 2 <= m <= ``available`` verification rows."""
  if not 2 <= m <= available:
    raise ValueError(
        f"m = {m} verification images requested but the key holds "
        f"{available}; lower m (at least 2) or embed with a larger "
        "transform_rate or verification_fraction.")


def ownership_test(suspect_confidence: np.ndarray,
                   reference_confidence: np.ndarray, *, setting: str,
                   alpha: float, positions: np.ndarray) -> MoveVerdict:
  """Both tests of the module doc on C's confidences.

  Args:
    suspect_confidence: float [m] in [0, 1], c_S.
    reference_confidence: float [K, m] in [0, 1], K >= 2: the benign
      references' confidences on the same images; row 0 is B's, c_B,
      paired with c_S.
    setting: ``"white_box"`` or ``"black_box"`` (recorded).
    alpha: the significance level, in (0, 1).
    positions: int [m], the verification rows (recorded).
  """
  if not 0.0 < float(alpha) < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
  suspect_confidence = np.asarray(suspect_confidence, np.float64)
  reference_confidence = np.asarray(reference_confidence, np.float64)
  if (reference_confidence.ndim != 2 or reference_confidence.shape[0] < 2 or
      reference_confidence.shape[1:] != suspect_confidence.shape):
    raise ValueError(
        f"reference_confidence must be [K, m] with K >= 2 references and "
        f"m = {suspect_confidence.shape} images as the suspect's, got shape "
        f"{reference_confidence.shape}; train more benign references.")
  # paired_ttest tests H1: first > second + tau; here c_S > c_B.
  test = paired_ttest(suspect_confidence, reference_confidence[0], tau=0.0)
  scores = np.array([model_score(row) for row in reference_confidence])
  reference = reference_lib.reference_ttest(model_score(suspect_confidence),
                                            scores)
  return MoveVerdict(
      setting=setting, test=test, reference=reference, alpha=float(alpha),
      stolen=test.rejects(alpha) and reference.rejects(alpha),
      suspect_confidence=suspect_confidence,
      benign_confidence=reference_confidence[0],
      reference_scores=scores,
      positions=np.asarray(positions, np.int64))
