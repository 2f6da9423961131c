"""Seeded, stratified subsets, disjoint splits and uniform draws of
indices."""

from __future__ import annotations

import jax
import numpy as np

from jaxwm.data.dataset import Dataset


def _check_fraction(fraction: float) -> float:
  fraction = float(fraction)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
  return fraction


def stratified_indices(labels: np.ndarray, fraction: float,
                       seed: int) -> np.ndarray:
  """Indices of a seeded subset holding ``fraction`` of every class.

  Args:
    labels: int array [N].
    fraction: share of each class to keep, in (0, 1].
    seed: integer seed; equal seeds give equal subsets.

  Returns:
    Sorted int64 array of indices; at least one example per present class.
  """
  fraction = _check_fraction(fraction)
  rng = np.random.default_rng(seed)
  chosen = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    count = max(1, int(round(fraction * members.size)))
    chosen.append(rng.choice(members, size=count, replace=False))
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def stratified_subset(dataset: Dataset, fraction: float, seed: int) -> Dataset:
  """A seeded subset with ``fraction`` of each class (e.g. 10% for WILD)."""
  return dataset.take(stratified_indices(dataset.labels, fraction, seed))


def disjoint_split(dataset: Dataset, fraction: float,
                   seed: int) -> tuple[Dataset, Dataset]:
  """Splits into (stratified ``fraction``, the rest), sharing no example."""
  first = stratified_indices(dataset.labels, fraction, seed)
  rest = np.setdiff1d(np.arange(len(dataset)), first, assume_unique=True)
  return dataset.take(first), dataset.take(rest)


def select_indices(candidates: np.ndarray, count: int,
                   key: jax.Array) -> np.ndarray:
  """``count`` distinct entries of ``candidates``, uniformly, sorted.

  Args:
    candidates: int [P], the indices that may be chosen.
    count: how many to choose, 0 <= count <= P.
    key: jax.random key.

  Returns:
    int64 [count], sorted.
  """
  candidates = np.asarray(candidates, np.int64)
  if not 0 <= count <= candidates.size:
    raise ValueError(
        f"cannot choose {count} samples from {candidates.size} candidates; "
        "lower the poisoning rate or widen the source classes.")
  order = np.asarray(jax.random.permutation(key, candidates.size))
  return np.sort(candidates[order[:count]])
