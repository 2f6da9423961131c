"""How well a detector separates poisoned from clean samples.

Spectral signatures and activation clustering flag training samples; STRIP
scores test inputs. Each is judged here against the samples known to be
poisoned (the watermark key's ``poisoned_indices``):

* the UBW paper's *successful filtering rate* (Appendix G.4): the number of
  flagged poisoned samples over the number of all flagged samples (a
  precision; the lower, the better the watermark resists);
* the true-positive rate (flagged poisoned / poisoned) and the
  false-positive rate (flagged clean / clean);
* the AUROC of the detector's continuous suspicion score (higher = more
  suspicious), which needs no threshold.

Statistics run on the host in NumPy float64.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics


def poisoned_mask(poisoned_indices: np.ndarray, num_samples: int) -> np.ndarray:
  """bool [N], True at ``poisoned_indices`` (int [M] in [0, N))."""
  indices = np.asarray(poisoned_indices)
  if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
    raise ValueError(f"poisoned_indices must be integers [M], got dtype "
                     f"{indices.dtype} and shape {indices.shape}.")
  if indices.size and (indices.min() < 0 or indices.max() >= num_samples):
    raise ValueError(
        f"poisoned_indices must lie in [0, {num_samples}), got values from "
        f"{indices.min()} to {indices.max()}; pass the indices of the "
        "dataset the scores were computed on.")
  mask = np.zeros(num_samples, bool)
  mask[indices] = True
  return mask


def detection_auroc(scores: np.ndarray, is_poisoned: np.ndarray) -> float:
  """AUROC of ``scores`` (higher = more suspicious) for ``is_poisoned``.

  Args:
    scores: float [N], finite.
    is_poisoned: bool [N], with both poisoned and clean samples.

  Returns:
    float in [0, 1]: the probability that a random poisoned sample scores
    above a random clean one (ties count one half); 0.5 is chance.
  """
  scores = np.asarray(scores, np.float64)
  is_poisoned = np.asarray(is_poisoned, bool)
  if scores.shape != is_poisoned.shape or scores.ndim != 1:
    raise ValueError(f"scores {scores.shape} and is_poisoned "
                     f"{is_poisoned.shape} must both be [N].")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores must be finite; a detector returned NaN or inf.")
  if is_poisoned.all() or not is_poisoned.any():
    raise ValueError(
        f"the AUROC needs poisoned and clean samples, got "
        f"{int(is_poisoned.sum())} poisoned of {is_poisoned.size}.")
  return float(sk_metrics.roc_auc_score(is_poisoned, scores))


@dataclasses.dataclass(frozen=True)
class FilteringReport:
  """A detector's flags and scores judged against the planted poisons.

  Attributes:
    num_samples: N, the samples judged.
    num_poisoned: how many of them are poisoned.
    num_flagged: how many the detector flagged (filtered out).
    num_flagged_poisoned: how many flagged samples are poisoned.
    successful_filtering_rate: ``num_flagged_poisoned / num_flagged`` (UBW
      paper, Appendix G.4); None when nothing was flagged.
    true_positive_rate: ``num_flagged_poisoned / num_poisoned``.
    false_positive_rate: flagged clean samples over clean samples.
    auroc: :func:`detection_auroc` of the detector's scores.
  """

  num_samples: int
  num_poisoned: int
  num_flagged: int
  num_flagged_poisoned: int
  successful_filtering_rate: float | None
  true_positive_rate: float
  false_positive_rate: float
  auroc: float

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results."""
    return dataclasses.asdict(self)


def filtering_report(flagged: np.ndarray, scores: np.ndarray,
                     poisoned_indices: np.ndarray) -> FilteringReport:
  """Judges a filtering defence on a training set.

  Args:
    flagged: bool [N], the samples the defence removes.
    scores: float [N], its suspicion scores (higher = more suspicious).
    poisoned_indices: int [M], the truly poisoned samples, 0 < M < N.

  Returns:
    A :class:`FilteringReport`.
  """
  flagged = np.asarray(flagged)
  if flagged.dtype != bool or flagged.ndim != 1:
    raise ValueError(f"flagged must be bool [N], got dtype {flagged.dtype} "
                     f"and shape {flagged.shape}.")
  is_poisoned = poisoned_mask(poisoned_indices, flagged.size)
  auroc = detection_auroc(scores, is_poisoned)
  num_flagged = int(flagged.sum())
  hits = int(np.sum(flagged & is_poisoned))
  num_poisoned = int(is_poisoned.sum())
  return FilteringReport(
      num_samples=int(flagged.size), num_poisoned=num_poisoned,
      num_flagged=num_flagged, num_flagged_poisoned=hits,
      successful_filtering_rate=hits / num_flagged if num_flagged else None,
      true_positive_rate=hits / num_poisoned,
      false_positive_rate=(num_flagged - hits) / (flagged.size -
                                                  num_poisoned),
      auroc=auroc)
