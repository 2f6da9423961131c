"""Activation clustering (Chen et al., 2018): filter poisons by splitting each
class's last-hidden-layer activations into two clusters.

Poisons of a class are classified there for a different reason (the
trigger) than its clean samples, so their activations form a cluster of
their own. For each label y, the activations of the training samples
labelled y are reduced to ``num_components`` dimensions (independent
component analysis, as Chen et al., or PCA) and split by 2-means; the
smaller cluster is the poison candidate, and an ``analysis`` decides
whether it is removed:

* ``"smaller"``: always (every class loses its smaller cluster; the
  default of the public reference implementation, which the UBW paper ran
  with its defaults for Table 11);
* ``"relative_size"``: when it holds at most ``size_threshold`` of the
  class (Chen et al.'s relative-size test, 0.35);
* ``"silhouette"``: when it holds at most ``size_threshold`` of the class
  and the 2-means split has a mean silhouette score above
  ``silhouette_threshold`` (two well-separated clusters; a clean class
  does not split well).

A sample's continuous suspicion score is one minus the share of its class
that its cluster holds: members of a small cluster score high.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from sklearn import cluster as sk_cluster
from sklearn import decomposition as sk_decomposition
from sklearn import metrics as sk_metrics

from jaxwm.defenses import filtering

REDUCTIONS = ("ica", "pca")
ANALYSES = ("smaller", "relative_size", "silhouette")


@dataclasses.dataclass(frozen=True)
class ActivationClusteringConfig:
  """Settings of activation clustering.

  Attributes:
    num_components: dimensions kept by the reduction (10, as Chen et al.).
    reduction: ``"ica"`` (FastICA, as Chen et al.) or ``"pca"``.
    analysis: one of :data:`ANALYSES` (module docstring).
    size_threshold: the largest share of a class a poisoned cluster may
      hold, in (0, 0.5] (0.35, as Chen et al.).
    silhouette_threshold: the mean silhouette score above which a class
      counts as split, in [-1, 1).
  """

  num_components: int = 10
  reduction: str = "ica"
  analysis: str = "smaller"
  size_threshold: float = 0.35
  silhouette_threshold: float = 0.10

  def __post_init__(self):
    if self.num_components < 1:
      raise ValueError(f"num_components must be >= 1, got "
                       f"{self.num_components}.")
    if self.reduction not in REDUCTIONS:
      raise ValueError(f"unknown reduction {self.reduction!r}; use one of "
                       f"{REDUCTIONS}.")
    if self.analysis not in ANALYSES:
      raise ValueError(f"unknown analysis {self.analysis!r}; use one of "
                       f"{ANALYSES}.")
    if not 0.0 < self.size_threshold <= 0.5:
      raise ValueError(f"size_threshold must be in (0, 0.5], got "
                       f"{self.size_threshold}.")
    if not -1.0 <= self.silhouette_threshold < 1.0:
      raise ValueError(f"silhouette_threshold must be in [-1, 1), got "
                       f"{self.silhouette_threshold}.")


@dataclasses.dataclass(frozen=True)
class ActivationClusteringResult:
  """Per-class splits and per-sample flags of activation clustering.

  Attributes:
    classes: int64 [L], the labels present, in order.
    smaller_share: float64 [L], the share of each class in its smaller
      cluster.
    silhouette: float64 [L], each split's mean silhouette score.
    class_flagged: bool [L], whether the class's smaller cluster is removed.
    scores: float64 [N], one minus the share of the sample's class in its
      cluster.
    flagged: bool [N], the removed samples.
    config: the settings used.
  """

  classes: np.ndarray
  smaller_share: np.ndarray
  silhouette: np.ndarray
  class_flagged: np.ndarray
  scores: np.ndarray
  flagged: np.ndarray
  config: ActivationClusteringConfig

  def report(self, poisoned_indices: np.ndarray) -> filtering.FilteringReport:
    """The filtering rates and AUROC (of ``scores``) against the planted
    poisons, int [M]."""
    return filtering.filtering_report(self.flagged, self.scores,
                                      poisoned_indices)

  def to_dict(self) -> dict[str, Any]:
    """Settings and per-class numbers (the per-sample arrays are left out)."""
    return {**dataclasses.asdict(self.config),
            "classes": self.classes.tolist(),
            "smaller_share": self.smaller_share.tolist(),
            "silhouette": self.silhouette.tolist(),
            "flagged_classes": self.classes[self.class_flagged].tolist(),
            "num_flagged": int(self.flagged.sum())}


def _reduce(activations: np.ndarray, config: ActivationClusteringConfig,
            seed: int) -> np.ndarray:
  """[n, D] -> [n, min(num_components, D, n)]."""
  components = min(config.num_components, *activations.shape)
  if config.reduction == "pca":
    reducer = sk_decomposition.PCA(components, random_state=seed)
  else:
    reducer = sk_decomposition.FastICA(components, max_iter=1000, tol=5e-3,
                                       whiten="unit-variance",
                                       random_state=seed)
  return reducer.fit_transform(activations)


def _two_means(reduced: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
  """(cluster ids int [n] with 1 the smaller cluster, mean silhouette)."""
  assignment = sk_cluster.KMeans(2, n_init=10,
                                 random_state=seed).fit_predict(reduced)
  if np.sum(assignment == 1) > np.sum(assignment == 0):
    assignment = 1 - assignment
  if assignment.min() == assignment.max():
    return assignment, -1.0
  return assignment, float(sk_metrics.silhouette_score(reduced, assignment))


def _removes(share: float, silhouette: float,
             config: ActivationClusteringConfig) -> bool:
  if config.analysis == "smaller":
    return True
  small = share <= config.size_threshold
  if config.analysis == "relative_size":
    return small
  return small and silhouette > config.silhouette_threshold


def activation_clustering(activations: np.ndarray, labels: np.ndarray,
                          key: jax.Array,
                          config: ActivationClusteringConfig | None = None
                          ) -> ActivationClusteringResult:
  """Splits each class in two and flags the smaller clusters it removes.

  Args:
    activations: float [N, D], the last hidden layer's activations of the
      training images (:func:`jaxwm.defenses.activations.layer_activations`
      at ``"features"``).
    labels: int [N], the training labels as trained on.
    key: jax.random key; seeds the reductions and the 2-means runs.
    config: settings; default :class:`ActivationClusteringConfig`.

  Returns:
    An :class:`ActivationClusteringResult`.

  Raises:
    ValueError: bad shapes, or a class with fewer than 3 samples (too few
      to split).
  """
  config = config or ActivationClusteringConfig()
  activations = np.asarray(activations, np.float64)
  labels = np.asarray(labels)
  if activations.ndim != 2 or labels.shape != activations.shape[:1]:
    raise ValueError(f"activations must be [N, D] and labels [N], got "
                     f"{activations.shape} and {labels.shape}.")
  classes, counts = np.unique(labels, return_counts=True)
  if counts.min() < 3:
    raise ValueError(
        f"class {classes[np.argmin(counts)]} has {counts.min()} samples; "
        "activation clustering needs at least 3 per class.")
  seeds = np.asarray(jax.random.randint(key, classes.shape, 0, 2**31 - 1))
  shares = np.zeros(classes.size)
  silhouettes = np.zeros(classes.size)
  class_flagged = np.zeros(classes.size, bool)
  scores = np.zeros(labels.shape)
  flagged = np.zeros(labels.shape, bool)
  for index, (label, seed) in enumerate(zip(classes, seeds)):
    members = np.flatnonzero(labels == label)
    reduced = _reduce(activations[members], config, int(seed))
    assignment, silhouettes[index] = _two_means(reduced, int(seed))
    cluster_share = np.bincount(assignment, minlength=2) / members.size
    shares[index] = cluster_share[1]
    scores[members] = 1.0 - cluster_share[assignment]
    class_flagged[index] = _removes(shares[index], silhouettes[index],
                                    config)
    flagged[members] = class_flagged[index] & (assignment == 1)
  return ActivationClusteringResult(classes.astype(np.int64), shares,
                                    silhouettes, class_flagged, scores,
                                    flagged, config)
