"""Tests of jaxwm.watermark.trigger_sets: abstract and folder trigger sets."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from jaxwm.watermark import trigger_sets


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 24, 3), (8, 8, 4)])
def test_abstract_images_shape_dtype_and_range(shape):
  images = trigger_sets.abstract_images(6, shape, seed=0)
  assert images.shape == (6,) + shape and images.dtype == np.uint8
  # Full-contrast waves: every image spans most of 0..255.
  spans = images.reshape(6, -1).max(1).astype(int) - images.reshape(
      6, -1).min(1)
  assert np.all(spans > 128)


def test_abstract_images_are_seeded_and_distinct():
  first = trigger_sets.abstract_images(20, (16, 16, 3), seed=1)
  np.testing.assert_array_equal(
      first, trigger_sets.abstract_images(20, (16, 16, 3), seed=1))
  assert not np.array_equal(
      first, trigger_sets.abstract_images(20, (16, 16, 3), seed=2))
  assert len({image.tobytes() for image in first}) == 20


def test_unseeded_trigger_sets_differ():
  a = trigger_sets.abstract_trigger_set(5, 10, (8, 8, 1))
  b = trigger_sets.abstract_trigger_set(5, 10, (8, 8, 1))
  assert not np.array_equal(a.images, b.images)


def test_abstract_images_are_not_like_the_data():
  # Out of distribution: far from blank and from constant images, and smooth
  # (neighbouring pixels correlate), unlike i.i.d. noise.
  images = trigger_sets.abstract_images(50, (28, 28, 1), seed=3).astype(float)
  assert 40 < images.std() < 110
  left, right = images[:, :, :-1].ravel(), images[:, :, 1:].ravel()
  assert np.corrcoef(left, right)[0, 1] > 0.6


def test_labels_are_uniform_and_seeded():
  labels = trigger_sets.random_labels(5000, 10, seed=4)
  assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
  assert stats.chisquare(np.bincount(labels, minlength=10)).pvalue > 0.01
  np.testing.assert_array_equal(labels,
                                trigger_sets.random_labels(5000, 10, seed=4))


def test_abstract_trigger_set_is_a_dataset_with_the_default_size():
  triggers = trigger_sets.abstract_trigger_set(trigger_sets.DEFAULT_SIZE, 10,
                                               (28, 28, 1), seed=5)
  assert len(triggers) == 100 and triggers.num_classes == 10
  assert triggers.image_shape == (28, 28, 1)
  # Images and labels come from independent streams of one seed.
  np.testing.assert_array_equal(
      triggers.labels, trigger_sets.random_labels(100, 10, seed=5))


def _write_images(folder, count):
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
        folder / f"img{i}.png")
  (folder / "notes.txt").write_text("not an image")


def test_folder_trigger_set_loads_resized_images(tmp_path):
  _write_images(tmp_path, 5)
  triggers = trigger_sets.folder_trigger_set(str(tmp_path), 3, 7, (10, 12, 3),
                                             seed=6)
  assert triggers.images.shape == (3, 10, 12, 3)
  assert triggers.num_classes == 7
  sources = [
      np.asarray(Image.open(tmp_path / f"img{i}.png").resize(
          (12, 10), Image.BILINEAR)) for i in range(5)
  ]
  for image in triggers.images:
    assert any(np.array_equal(image, source) for source in sources)
  assert len({image.tobytes() for image in triggers.images}) == 3


def test_folder_images_grey(tmp_path):
  _write_images(tmp_path, 2)
  images = trigger_sets.folder_images(str(tmp_path), 2, (8, 8, 1), seed=0)
  assert images.shape == (2, 8, 8, 1)


def test_folder_errors_say_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    trigger_sets.folder_images(str(tmp_path / "missing"), 1, (8, 8, 3))
  _write_images(tmp_path, 2)
  with pytest.raises(ValueError, match="holds 2 image files"):
    trigger_sets.folder_images(str(tmp_path), 3, (8, 8, 3))
  with pytest.raises(ValueError, match="C = 1 or 3"):
    trigger_sets.folder_images(str(tmp_path), 1, (8, 8, 2))


@pytest.mark.parametrize("call, match", [
    (lambda: trigger_sets.abstract_images(0, (8, 8, 1)), "n >= 1"),
    (lambda: trigger_sets.abstract_images(1, (8, 8)), r"\(H, W, C\)"),
    (lambda: trigger_sets.random_labels(3, 1), "num_classes must be >= 2"),
])
def test_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()
