"""Tests for jaxwm.data.splits: stratified, seeded, disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from jaxwm.data import Dataset
from jaxwm.data import disjoint_split
from jaxwm.data import stratified_indices
from jaxwm.data import stratified_subset

# 10 examples of class 0, 20 of class 1, 30 of class 2, interleaved.
_LABELS = np.array([0] * 10 + [1] * 20 + [2] * 30)[
    np.random.default_rng(123).permutation(60)]


def _indexed_dataset() -> Dataset:
  """Example i has every pixel equal to i, so an image identifies its index."""
  images = np.broadcast_to(
      np.arange(60, dtype=np.uint8)[:, None, None, None], (60, 2, 2, 1))
  return Dataset(images=images.copy(), labels=_LABELS, num_classes=3)


def test_stratified_indices_keep_the_fraction_of_every_class():
  chosen = stratified_indices(_LABELS, 0.1, seed=0)
  # round(0.1 * 10) = 1, round(0.1 * 20) = 2, round(0.1 * 30) = 3.
  np.testing.assert_array_equal(np.bincount(_LABELS[chosen]), [1, 2, 3])
  assert np.all(np.diff(chosen) > 0)  # sorted, no repeats


def test_every_present_class_keeps_at_least_one_example():
  chosen = stratified_indices(_LABELS, 0.01, seed=0)
  np.testing.assert_array_equal(np.bincount(_LABELS[chosen]), [1, 1, 1])


def test_stratified_indices_are_determined_by_the_seed():
  first = stratified_indices(_LABELS, 0.5, seed=7)
  np.testing.assert_array_equal(first, stratified_indices(_LABELS, 0.5, 7))
  assert not np.array_equal(first, stratified_indices(_LABELS, 0.5, 8))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_outside_unit_interval_is_rejected(fraction):
  with pytest.raises(ValueError, match=rf"fraction must be in \(0, 1\], got "
                     rf"{fraction}"):
    stratified_indices(_LABELS, fraction, seed=0)


def test_stratified_subset_takes_the_chosen_examples():
  dataset = _indexed_dataset()
  subset = stratified_subset(dataset, 0.1, seed=3)
  expected = stratified_indices(_LABELS, 0.1, seed=3)
  np.testing.assert_array_equal(subset.images[:, 0, 0, 0], expected)
  np.testing.assert_array_equal(subset.labels, _LABELS[expected])


def test_disjoint_split_partitions_the_examples():
  first, rest = disjoint_split(_indexed_dataset(), 0.2, seed=1)
  first_ids = first.images[:, 0, 0, 0]
  rest_ids = rest.images[:, 0, 0, 0]
  assert not set(first_ids) & set(rest_ids)
  np.testing.assert_array_equal(
      np.sort(np.concatenate([first_ids, rest_ids])), np.arange(60))
  # round(0.2 * [10, 20, 30]) = [2, 4, 6] in the first part.
  np.testing.assert_array_equal(np.bincount(first.labels), [2, 4, 6])
  np.testing.assert_array_equal(np.bincount(rest.labels), [8, 16, 24])
  np.testing.assert_array_equal(rest.labels, _LABELS[rest_ids])
