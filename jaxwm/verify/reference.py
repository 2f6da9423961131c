"""A one-sided test of one model's score against K reference models'.

A test over images (such as :func:`jaxwm.verify.paired_ttest`) treats the
images as the random sample and the models as fixed. When the question is
whether a suspect model differs from the *population* of models that could
have been trained without the owner's watermark, the models are the random
sample: two independently trained models differ systematically on any
fixed set of images, and a test over images then accuses some innocent
models however many images it uses. This test takes the spread between
models into account.

Let s be the suspect's score and r_1..r_K the scores of K reference models
trained without the watermark (independently of each other and of the
suspect, and never used to build the score). Under

    H0: s is drawn from the references' distribution, N(mu, sigma^2)

the prediction statistic

    t = (s - mean(r)) / (sd(r) * sqrt(1 + 1/K))

(sd with K - 1 degrees of freedom) follows Student's t with K - 1 degrees
of freedom exactly, and the one-sided p-value P(T >= t) tests H1: the
suspect scores higher than such models do. Its size holds over suspects
exchangeable with the references, whatever the number of images behind
each score; it assumes the scores are normal across models (use a scale on
which they are roughly so, e.g. a logit).

The p-value is never 0.0: below the smallest normal double it is clipped
to :data:`jaxwm.verify.ttest.P_VALUE_FLOOR`; ``log10_p_value`` is exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.verify.ttest import P_VALUE_FLOOR
from jaxwm.verify.ttest import t_log_sf

_LN10 = math.log(10.0)
HYPOTHESIS = ("H0: the suspect's score is drawn from the reference models' "
              "normal distribution vs H1: it is higher; one-sided "
              "prediction t-test, K - 1 degrees of freedom")


@dataclasses.dataclass(frozen=True)
class ReferenceTestResult:
  """The outcome of :func:`reference_ttest`; every number is finite.

  Attributes:
    statistic: (s - mean(r)) / (sd(r) sqrt(1 + 1/K)).
    dof: K - 1.
    p_value: P(T >= statistic), clipped below at P_VALUE_FLOOR.
    log10_p_value: log10 P(T >= statistic), exact.
    suspect_score: s.
    reference_mean: mean(r).
    reference_sd: sd(r), K - 1 degrees of freedom.
    num_references: K.
  """

  statistic: float
  dof: int
  p_value: float
  log10_p_value: float
  suspect_score: float
  reference_mean: float
  reference_sd: float
  num_references: int

  def rejects(self, alpha: float = DEFAULT_ALPHA) -> bool:
    """Whether H0 is rejected at level ``alpha``."""
    return self.p_value < alpha

  def to_dict(self) -> dict[str, float | int]:
    return dataclasses.asdict(self)


def reference_ttest(suspect_score: float,
                    reference_scores: np.ndarray) -> ReferenceTestResult:
  """Tests H1: the suspect scores above the reference models (module doc).

  Args:
    suspect_score: s, a finite float.
    reference_scores: float [K], K >= 2 finite scores, not all equal.

  Raises:
    ValueError: a score that is not finite, fewer than two references, or
      references that all score the same (their spread is unknown).
  """
  suspect_score = float(suspect_score)
  references = np.asarray(reference_scores, np.float64)
  if references.ndim != 1 or references.size < 2:
    raise ValueError(
        f"reference_scores must be a vector of at least 2 models' scores, "
        f"got shape {references.shape}; train more reference models.")
  if not (math.isfinite(suspect_score) and np.all(np.isfinite(references))):
    raise ValueError(
        f"scores must be finite, got suspect {suspect_score} and references "
        f"{references.tolist()}.")
  k = references.size
  spread = float(np.std(references, ddof=1))
  if not spread > 0.0:
    raise ValueError(
        f"the {k} reference models all score {references[0]}: their spread "
        "is unknown; use references trained from different seeds.")
  mean = float(np.mean(references))
  statistic = (suspect_score - mean) / (spread * math.sqrt(1.0 + 1.0 / k))
  log_p = float(t_log_sf(np.array([statistic]), float(k - 1))[0])
  return ReferenceTestResult(
      statistic=float(statistic), dof=k - 1,
      p_value=max(math.exp(log_p), P_VALUE_FLOOR),
      log10_p_value=log_p / _LN10, suspect_score=suspect_score,
      reference_mean=mean, reference_sd=spread, num_references=k)
