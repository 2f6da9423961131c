"""Spectral signatures (Tran et al., NeurIPS 2018): filter poisons by the top
singular direction of each class's representations.

For each label y, let R be the [n_y, D] learned representations of the
training samples labelled y, centred by their mean. Poisons that share a
trigger shift the representation in a common direction, which then
dominates the top right singular vector v of R; each sample's outlier score
is its squared projection ``(R_i . v)^2``, and the defence removes the
``removal_factor * epsilon * n_y`` highest-scoring samples of every class
(Tran et al. use a factor 1.5 and an upper bound epsilon on the poisoned
share of a class).

The scores of different classes are compared as they are (the AUROC of
:meth:`SpectralSignaturesResult.report` ranks all samples by them); the
method, and this comparison, work when poisons are a minority of their
class: when a class is half poisons, both halves lie far from the mean
along v and score alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxwm.defenses import filtering


@dataclasses.dataclass(frozen=True)
class SpectralSignaturesResult:
  """The outlier scores and removals of spectral signatures.

  Attributes:
    scores: float64 [N], ``((R_i - mean R) . v_y)^2`` within each sample's
      class y.
    flagged: bool [N], the removed samples.
    poison_fraction: epsilon, the assumed poisoned share of a class.
    removal_factor: the removed share of a class is this times epsilon.
  """

  scores: np.ndarray
  flagged: np.ndarray
  poison_fraction: float
  removal_factor: float

  def report(self, poisoned_indices: np.ndarray) -> filtering.FilteringReport:
    """The filtering rates and AUROC (of ``scores``) against the planted
    poisons, int [M]."""
    return filtering.filtering_report(self.flagged, self.scores,
                                      poisoned_indices)

  def to_dict(self) -> dict[str, Any]:
    """The settings and the number removed (the arrays are left out)."""
    return {"poison_fraction": self.poison_fraction,
            "removal_factor": self.removal_factor,
            "num_flagged": int(self.flagged.sum())}


def outlier_scores(representations: np.ndarray) -> np.ndarray:
  """Squared projections on the top singular direction of centred rows.

  Args:
    representations: float [n, D], one class's representations.

  Returns:
    float64 [n], ``((R_i - mean R) . v)^2`` with v the top right singular
    vector of the centred matrix; zeros when all rows are equal.
  """
  centred = np.asarray(representations, np.float64)
  centred = centred - centred.mean(axis=0)
  _, _, right = np.linalg.svd(centred, full_matrices=False)
  return np.square(centred @ right[0])


def spectral_signatures(representations: np.ndarray, labels: np.ndarray,
                        poison_fraction: float,
                        removal_factor: float = 1.5
                        ) -> SpectralSignaturesResult:
  """Scores every training sample and flags each class's top outliers.

  Args:
    representations: float [N, D], e.g. :func:`jaxwm.defenses.activations.
      layer_activations` of the training images at ``"features"``.
    labels: int [N], the training labels (the poisoned ones, as trained on).
    poison_fraction: epsilon in (0, 1), the defender's bound on the
      poisoned share of a class.
    removal_factor: > 0; each class loses ``floor(removal_factor *
      epsilon * n_y)`` samples (at most all of them).

  Returns:
    A :class:`SpectralSignaturesResult`.
  """
  representations = np.asarray(representations)
  labels = np.asarray(labels)
  if representations.ndim != 2 or labels.shape != representations.shape[:1]:
    raise ValueError(
        f"representations must be [N, D] and labels [N], got "
        f"{representations.shape} and {labels.shape}.")
  if not 0.0 < poison_fraction < 1.0:
    raise ValueError(f"poison_fraction must be in (0, 1), got "
                     f"{poison_fraction}; pass the assumed poisoned share "
                     "of a class, e.g. the poisoning rate.")
  if removal_factor <= 0:
    raise ValueError(f"removal_factor must be > 0, got {removal_factor}.")
  scores = np.zeros(labels.shape, np.float64)
  flagged = np.zeros(labels.shape, bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    class_scores = outlier_scores(representations[members])
    scores[members] = class_scores
    count = min(members.size,
                int(removal_factor * poison_fraction * members.size))
    flagged[members[np.argsort(-class_scores, kind="stable")[:count]]] = True
  return SpectralSignaturesResult(scores, flagged,
                                  float(poison_fraction),
                                  float(removal_factor))
