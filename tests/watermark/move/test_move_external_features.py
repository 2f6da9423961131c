"""MOVE's watermark: a tenth of the images transformed, labels kept, and the
owner's key with disjoint meta-classifier and verification rows."""

import jax
import numpy as np
import pytest

from jaxwm import secure_files
from jaxwm.watermark.move import external_features
from jaxwm.watermark.move.external_features import MoveKey


def _invert(images):
  return 255 - images


def _embed(dataset, seed=0, **kwargs):
  return external_features.embed(dataset, _invert, jax.random.PRNGKey(seed),
                                 description={"name": "invert"}, **kwargs)


def test_a_tenth_is_transformed_and_every_label_kept(digits):
  train = digits[0]
  marked, key = _embed(train)
  changed = np.flatnonzero(np.any(marked.images != train.images,
                                  axis=(1, 2, 3)))
  assert len(key.indices) == round(0.1 * len(train))
  assert set(changed) <= set(key.indices)
  np.testing.assert_array_equal(marked.labels, train.labels)
  np.testing.assert_array_equal(marked.images[key.indices],
                                _invert(train.images[key.indices]))
  np.testing.assert_array_equal(key.transformed.images,
                                marked.images[key.indices])
  np.testing.assert_array_equal(key.benign_images, train.images[key.indices])
  np.testing.assert_array_equal(key.transformed.labels,
                                train.labels[key.indices])
  assert key.transform_rate == pytest.approx(0.1, abs=1e-3)


def test_meta_and_verification_rows_are_disjoint_and_cover_the_key(digits):
  _, key = _embed(digits[0], verification_fraction=0.25)
  meta, held_out = key.meta_positions, key.verification_positions
  assert np.intersect1d(meta, held_out).size == 0
  np.testing.assert_array_equal(np.union1d(meta, held_out),
                                np.arange(len(key.indices)))
  assert held_out.size == round(0.25 * len(key.indices))


def test_the_seed_decides_the_rows(digits):
  _, first = _embed(digits[0], seed=1)
  _, again = _embed(digits[0], seed=1)
  _, other = _embed(digits[0], seed=2)
  np.testing.assert_array_equal(first.indices, again.indices)
  np.testing.assert_array_equal(first.verification_positions,
                                again.verification_positions)
  assert not np.array_equal(first.indices, other.indices)


def test_key_round_trips_and_tampering_is_detected(tmp_path, digits):
  _, key = _embed(digits[0])
  prefix = str(tmp_path / "move_key")
  key.save(prefix)
  loaded = MoveKey.load(prefix)
  for name, value in key.to_arrays().items():
    np.testing.assert_array_equal(loaded.to_arrays()[name], value,
                                  err_msg=name)
  assert loaded.to_metadata() == key.to_metadata()
  assert loaded.transformed.class_names == key.transformed.class_names
  with open(prefix + ".npz", "r+b") as f:
    f.seek(-40, 2)
    f.write(b"\x07")
  with pytest.raises(secure_files.TamperedFileError):
    MoveKey.load(prefix)


def test_overlapping_rows_are_refused(digits):
  _, key = _embed(digits[0])
  with pytest.raises(ValueError, match="overlap"):
    MoveKey(key.transformed, key.benign_images, key.indices,
            key.meta_positions, key.meta_positions[:3], key.transform_rate,
            key.seed, key.transform)


@pytest.mark.parametrize("transform, words", [
    (lambda x: x.astype(np.float32), "uint8"),
    (lambda x: x[:, :4], "shape"),
])
def test_a_transform_with_the_wrong_output_is_refused(digits, transform,
                                                     words):
  with pytest.raises(ValueError, match=words):
    external_features.embed(digits[0], transform, jax.random.PRNGKey(0))


def test_too_few_transformed_images_are_refused(digits):
  with pytest.raises(ValueError, match="transform_rate"):
    _embed(digits[0].take(np.arange(40)))
