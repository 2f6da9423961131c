"""MOVE's ownership verification by a one-sided paired t-test (Section 5.4).

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

The test treats the images as the random sample and the two models as
fixed: it detects any systematic difference between C's scores of S and of
B. Its false-positive rate on independent models is therefore as good as
C's ability to score clean models alike, which a C fitted on a single victim
and a single benign model (Definition 3) need not have: it can learn those
two models' weights rather than the external features. On digits (cnn of
width 8) jaxwm saw such a white-box C accuse independently trained models;
fitting C on several victims and several benign models
(:func:`jaxwm.watermark.move.pipeline.train_meta_classifier` takes lists)
is the remedy to measure first.

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

from jaxwm.poison.poisoned_label import select_indices
from jaxwm.verify.ttest import PairedTTestResult
from jaxwm.verify.ttest import paired_ttest

HYPOTHESIS = "H0: mu_S <= mu_B vs H1: mu_S > mu_B, one-sided paired t-test"


@dataclasses.dataclass(frozen=True)
class MoveVerdict:
  """The outcome of one MOVE verification.

  Attributes:
    setting: ``"white_box"`` or ``"black_box"``.
    test: the paired t-test on c_S - c_B (``delta_p`` is Delta mu).
    alpha: the significance level.
    stolen: whether H0 is rejected (``test.p_value < alpha``).
    suspect_confidence: float64 [m], c_S.
    benign_confidence: float64 [m], c_B.
    positions: int64 [m], the key's verification rows used.
  """

  setting: str
  test: PairedTTestResult
  alpha: float
  stolen: bool
  suspect_confidence: np.ndarray
  benign_confidence: np.ndarray
  positions: np.ndarray

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results."""
    return {
        "setting": self.setting, "hypothesis": HYPOTHESIS,
        "statistic": self.test.statistic, "p_value": self.test.p_value,
        "log10_p": self.test.log10_p_value,
        "ttest_log10_p": self.test.ttest_log10_p_value,
        "p_value_definition": self.test.p_value_definition,
        "delta_mu": self.test.delta_p, "m": self.test.m,
        "alpha": self.alpha, "decision": "stolen" if self.stolen else
        "not_stolen",
        "mu_suspect": float(np.mean(self.suspect_confidence)),
        "mu_benign": float(np.mean(self.benign_confidence)),
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
  if not 2 <= m <= verification_positions.size:
    raise ValueError(
        f"m = {m} verification images requested but the key holds "
        f"{verification_positions.size}; lower m (at least 2) or embed with "
        "a larger transform_rate or verification_fraction.")
  return select_indices(verification_positions, m, key)


def ownership_test(suspect_confidence: np.ndarray,
                   benign_confidence: np.ndarray, *, setting: str,
                   alpha: float, positions: np.ndarray) -> MoveVerdict:
  """The paired test of H1: mu_S > mu_B on C's confidences (module doc).

  Args:
    suspect_confidence: float [m] in [0, 1], c_S.
    benign_confidence: float [m] in [0, 1], c_B, paired with c_S.
    setting: ``"white_box"`` or ``"black_box"`` (recorded).
    alpha: the significance level, in (0, 1).
    positions: int [m], the verification rows (recorded).
  """
  if not 0.0 < float(alpha) < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
  # paired_ttest tests H1: first > second + tau; here c_S > c_B.
  test = paired_ttest(suspect_confidence, benign_confidence, tau=0.0)
  return MoveVerdict(
      setting=setting, test=test, alpha=float(alpha),
      stolen=test.rejects(alpha),
      suspect_confidence=np.asarray(suspect_confidence, np.float64),
      benign_confidence=np.asarray(benign_confidence, np.float64),
      positions=np.asarray(positions, np.int64))
