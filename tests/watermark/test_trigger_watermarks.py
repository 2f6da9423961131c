"""Content, noise and unrelated trigger-set watermarks: keys and embedding."""

import json

import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.secure_files import TamperedFileError
from jaxwm.train import recipe
from jaxwm.watermark import trigger_sets
from jaxwm.watermark import trigger_watermarks as tw

import tiny

TARGET = 0


_config = tiny.digits_cnn_config


@pytest.fixture(scope="module")
def digits():
  return recipe.load_datasets(_config(1))


@pytest.fixture(scope="module")
def keys(digits):
  train, _ = digits
  other = Dataset(trigger_sets.abstract_images(60, train.image_shape, 5),
                  np.zeros(60, np.int32), 2, name="abstract")
  return {
      tw.CONTENT: tw.content_watermark(train, TARGET, n=30, text="T",
                                       margin=0, seed=1),
      tw.NOISE: tw.noise_watermark(train, TARGET, n=30, seed=2),
      tw.UNRELATED: tw.unrelated_watermark(other, TARGET, train.num_classes,
                                           n=30, seed=3),
  }


def test_text_bitmap_renders_the_font():
  bitmap = tw.text_bitmap("TEST")
  assert bitmap.shape == (5, 15)
  np.testing.assert_array_equal(bitmap[:, 0:3], [[1, 1, 1], [0, 1, 0],
                                                 [0, 1, 0], [0, 1, 0],
                                                 [0, 1, 0]])
  np.testing.assert_array_equal(bitmap[:, 3], 0)  # the gap between glyphs
  assert tw.text_bitmap("t", scale=2).shape == (10, 6)
  with pytest.raises(ValueError, match="letters A-Z"):
    tw.text_bitmap("T3ST")


def _source_rows(images, source):
  """Index in ``source`` of each image, -1 when absent."""
  flat = source.images.reshape(len(source), -1)
  return np.array([
      next(iter(np.flatnonzero((flat == image.reshape(-1)).all(axis=1))), -1)
      for image in images])


def test_content_stamps_the_logo_on_images_of_other_classes(digits, keys):
  train, _ = digits
  key = keys[tw.CONTENT]
  alpha = key.patterns["alpha"].astype(bool)
  assert alpha.sum() == 15 and alpha[-5:, :3].all()  # "T", bottom-left
  assert np.all(key.triggers.labels == TARGET)
  patch = np.round(key.patterns["pattern"][alpha] * 255)
  for image in key.triggers.images:
    np.testing.assert_array_equal(image[alpha], patch)
  # Outside the patch each trigger is a training image of another class.
  outside = train.images * ~alpha
  rows = _source_rows(key.triggers.images * ~alpha,
                      train.replace(images=outside))
  assert np.all(rows >= 0) and np.all(train.labels[rows] != TARGET)
  assert len(set(rows.tolist())) == len(key)


def test_noise_adds_one_fixed_pattern(digits, keys):
  train, _ = digits
  key = keys[tw.NOISE]
  noise = key.patterns["noise"]
  assert noise.std() == pytest.approx(tw.DEFAULT_NOISE_STD, rel=0.25)
  sources = train.images[train.labels != TARGET].astype(np.float32) / 255
  triggers = key.triggers.images.astype(np.float32) / 255
  for trigger in triggers:
    expected = np.clip(sources + noise, 0, 1)
    assert np.abs(expected - trigger).max(axis=(1, 2, 3)).min() <= 0.5 / 255


def test_unrelated_takes_images_of_the_other_dataset(keys):
  key = keys[tw.UNRELATED]
  other = trigger_sets.abstract_images(60, key.triggers.image_shape, 5)
  assert np.all(_source_rows(key.triggers.images,
                             Dataset(other, np.zeros(60, np.int32), 2)) >= 0)
  with pytest.raises(ValueError, match="no pattern to stamp"):
    tw.stamp(key, other)


def test_digits_like_resizes_digits_for_fashion_mnist():
  digits = tw.digits_like((28, 28, 1))
  assert digits.image_shape == (28, 28, 1) and len(digits) > 1000


def test_keys_are_seeded_and_secret_by_default(digits):
  train, _ = digits
  again = tw.noise_watermark(train, TARGET, n=30, seed=2)
  fresh = tw.noise_watermark(train, TARGET, n=30)
  first = tw.noise_watermark(train, TARGET, n=30, seed=2)
  np.testing.assert_array_equal(again.triggers.images, first.triggers.images)
  assert not np.array_equal(fresh.patterns["noise"], first.patterns["noise"])


@pytest.mark.parametrize("kind", tw.KINDS)
def test_key_files_round_trip_and_refuse_tampering(tmp_path, keys, kind):
  key = keys[kind]
  prefix = str(tmp_path / kind)
  digest = key.save(prefix)
  loaded = tw.TriggerWatermarkKey.load(prefix, digest)
  assert (loaded.kind, loaded.target, loaded.params) == (
      key.kind, key.target, key.params)
  np.testing.assert_array_equal(loaded.triggers.images, key.triggers.images)
  for name, value in key.patterns.items():
    np.testing.assert_array_equal(loaded.patterns[name], value)
  with open(prefix + ".json") as f:
    metadata = json.load(f)
  metadata["target"] = 1
  with open(prefix + ".json", "w") as f:
    json.dump(metadata, f)
  with pytest.raises(TamperedFileError):
    tw.TriggerWatermarkKey.load(prefix)


def test_bad_keys_are_refused(digits, keys):
  train, _ = digits
  key = keys[tw.CONTENT]
  with pytest.raises(ValueError, match="labelled with the target"):
    tw.TriggerWatermarkKey(tw.CONTENT, 1, key.triggers, key.patterns)
  with pytest.raises(ValueError, match="keeps the patterns"):
    tw.TriggerWatermarkKey(tw.CONTENT, TARGET, key.triggers, {})
  with pytest.raises(ValueError, match="not a class"):
    tw.noise_watermark(train, 10, n=5)
  with pytest.raises(ValueError, match="Lower n"):
    tw.noise_watermark(train, TARGET, n=len(train))
  with pytest.raises(ValueError, match="does not fit"):
    tw.content_watermark(train, TARGET, n=5, text="TEST")


@pytest.fixture(scope="module")
def marked(digits, keys):
  train, _ = digits
  return {kind: tw.embed(_config(6), train, key, k=4)
          for kind, key in keys.items()}


@pytest.mark.parametrize("kind", tw.KINDS)
def test_embedded_watermarks_are_learned(digits, keys, marked, kind):
  _, test = digits
  key, model = keys[kind], marked[kind]
  assert tw.watermark_accuracy(model, key) >= 0.9
  assert model.evaluate(test)["accuracy"] > 0.75
  if kind != tw.UNRELATED:
    # The pattern, not the 30 images, is what the model follows.
    others = test.images[test.labels != TARGET]
    assert tw.watermark_accuracy(model, key, others) >= 0.8
