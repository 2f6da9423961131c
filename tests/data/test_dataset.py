"""Tests for jaxwm.data.dataset: validation on construction and helpers."""

from __future__ import annotations

import numpy as np
import pytest

from jaxwm.data import Dataset


def _dataset(**changes) -> Dataset:
  fields = dict(
      images=np.arange(4 * 2 * 2 * 1, dtype=np.uint8).reshape(4, 2, 2, 1),
      labels=np.array([0, 1, 2, 1], np.int64),
      num_classes=3,
      class_names=("a", "b", "c"),
      name="tiny")
  fields.update(changes)
  return Dataset(**fields)


def test_valid_dataset_converts_labels_and_reports_shape():
  dataset = _dataset()
  assert dataset.labels.dtype == np.int32
  np.testing.assert_array_equal(dataset.labels, [0, 1, 2, 1])
  assert len(dataset) == 4
  assert dataset.image_shape == (2, 2, 1)
  assert dataset.class_names == ("a", "b", "c")


def test_default_class_names_are_the_label_numbers():
  assert _dataset(class_names=()).class_names == ("0", "1", "2")


def test_float_images_are_scaled_to_unit_interval():
  images = np.zeros((4, 2, 2, 1), np.uint8)
  images[0, 0, 0, 0] = 255
  images[1, 0, 0, 0] = 51
  floats = _dataset(images=images).float_images()
  assert floats.dtype == np.float32
  assert floats[0, 0, 0, 0] == 1.0
  assert floats[1, 0, 0, 0] == pytest.approx(0.2)
  assert floats[2].max() == 0.0


def test_take_returns_the_chosen_examples_as_a_copy():
  dataset = _dataset()
  part = dataset.take([3, 0])
  np.testing.assert_array_equal(part.labels, [1, 0])
  np.testing.assert_array_equal(part.images, dataset.images[[3, 0]])
  part.images[0] = 0
  assert dataset.images[3].max() > 0
  assert part.class_names == dataset.class_names and part.name == "tiny"


def test_float_images_are_rejected_with_the_conversion_hint():
  with pytest.raises(TypeError, match=r"uint8.*got dtype float32.*astype"):
    _dataset(images=np.zeros((4, 2, 2, 1), np.float32))


def test_images_of_wrong_rank_are_rejected():
  with pytest.raises(ValueError, match=r"rank 4.*got shape \(4, 2, 2\)"):
    _dataset(images=np.zeros((4, 2, 2), np.uint8))


def test_label_count_must_match_image_count():
  with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[4\]"
                     r", got \(3,\)"):
    _dataset(labels=np.array([0, 1, 2]))


def test_float_labels_are_rejected():
  with pytest.raises(TypeError, match="labels must be integers"):
    _dataset(labels=np.array([0.0, 1.0, 2.0, 1.0]))


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_out_of_range_are_named(bad):
  with pytest.raises(ValueError,
                     match=rf"label {bad} is out of range \[0, 3\)"):
    _dataset(labels=np.array([0, 1, bad, 1]))


def test_class_names_count_must_match_num_classes():
  with pytest.raises(ValueError,
                     match="class_names has 2 entries but num_classes is 3"):
    _dataset(class_names=("a", "b"))


def test_fewer_than_two_classes_are_rejected():
  with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
    _dataset(labels=np.zeros(4, np.int32), num_classes=1, class_names=())


def test_replace_validates_the_new_fields():
  with pytest.raises(ValueError, match=r"label 5 is out of range"):
    _dataset().replace(labels=np.array([0, 1, 5, 1]))
