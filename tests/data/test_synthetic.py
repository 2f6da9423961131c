"""Tests for jaxwm.data.synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from jaxwm.data import synthetic


def test_synthetic_has_the_requested_shapes_and_balanced_labels():
  dataset = synthetic(10, (5, 4, 3), num_classes=3, seed=0)
  assert dataset.images.shape == (10, 5, 4, 3)
  assert dataset.images.dtype == np.uint8
  assert dataset.labels.dtype == np.int32
  assert dataset.num_classes == 3 and dataset.name == "synthetic"
  # 10 labels over 3 classes: 4, 3, 3.
  np.testing.assert_array_equal(np.bincount(dataset.labels), [4, 3, 3])


def test_synthetic_images_cover_the_byte_range():
  images = synthetic(64, (8, 8, 1), num_classes=2, seed=0).images
  assert images.min() < 10 and images.max() > 245


def test_synthetic_is_determined_by_the_seed():
  first = synthetic(20, (3, 3, 1), num_classes=4, seed=5)
  again = synthetic(20, (3, 3, 1), num_classes=4, seed=5)
  other = synthetic(20, (3, 3, 1), num_classes=4, seed=6)
  np.testing.assert_array_equal(first.images, again.images)
  np.testing.assert_array_equal(first.labels, again.labels)
  assert not np.array_equal(first.images, other.images)


def test_synthetic_rejects_an_image_shape_without_channels():
  with pytest.raises(ValueError, match=r"\(H, W, C\).*got \(8, 8\)"):
    synthetic(4, (8, 8), num_classes=2, seed=0)


def test_synthetic_rejects_an_empty_dataset():
  with pytest.raises(ValueError, match="num_examples must be >= 1, got 0"):
    synthetic(0, (8, 8, 1), num_classes=2, seed=0)
