"""Tests of WatermarkKey: round trips and rejection of modified key files."""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
import pytest

from jaxwm import secure_files
from jaxwm.data.dataset import Dataset
from jaxwm.poison import poisoned_label
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey

SUFFIXES = (".npz", ".json", ".manifest.json")


def _dataset():
  rng = np.random.default_rng(0)
  return Dataset(rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
                 np.arange(40) % 4, 4)


@pytest.fixture(scope="module", params=["badnets", "wanet", "ubw_p"])
def key(request):
  config = poisoned_label.PoisonedLabelConfig(method=request.param)
  return poisoned_label.mark(_dataset(), config, jax.random.key(7))[1]


def _assert_same_array(a, b):
  assert a.dtype == b.dtype and a.shape == b.shape
  assert a.tobytes() == b.tobytes()


def _assert_same_key(a: WatermarkKey, b: WatermarkKey):
  for field in ("method", "target_label", "num_classes", "source_classes",
                "num_samples", "poison_rate"):
    assert getattr(a, field) == getattr(b, field), field
  for field in ("poisoned_indices", "seed", "noise_indices"):
    _assert_same_array(getattr(a, field), getattr(b, field))
  assert type(a.trigger) is type(b.trigger)
  assert (a.trigger.name, a.trigger.params) == (b.trigger.name,
                                                b.trigger.params)
  for name in a.trigger.array_names:
    _assert_same_array(getattr(a.trigger, name), getattr(b.trigger, name))


def test_round_trip_is_bit_identical(key, tmp_path):
  digest = key.save(tmp_path / "key")
  loaded = WatermarkKey.load(tmp_path / "key", digest=digest)
  _assert_same_key(key, loaded)
  images = _dataset().images[:5]
  _assert_same_array(loaded.apply_trigger_uint8(images),
                     key.apply_trigger_uint8(images))
  # Saving the loaded key again writes the same metadata and arrays.
  loaded.save(tmp_path / "again")
  for name in ("key", "again"):
    assert os.path.exists(tmp_path / f"{name}.manifest.json")
  assert (tmp_path / "key.json").read_bytes() == (
      tmp_path / "again.json").read_bytes()
  first, _ = secure_files.load(tmp_path / "key")
  second, _ = secure_files.load(tmp_path / "again")
  assert first.keys() == second.keys()
  for name in first:
    _assert_same_array(first[name], second[name])
  _assert_same_array(np.asarray(jax.random.key_data(loaded.rng_key())),
                     key.seed)


def _rejected(prefix, digest) -> bool:
  try:
    WatermarkKey.load(prefix, digest=digest)
  except secure_files.TamperedFileError:
    return True
  return False


@pytest.fixture(scope="module")
def saved_badnets_key(tmp_path_factory):
  config = poisoned_label.PoisonedLabelConfig(method="badnets")
  key = poisoned_label.mark(_dataset(), config, jax.random.key(7))[1]
  prefix = str(tmp_path_factory.mktemp("key") / "key")
  return prefix, key.save(prefix)


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


def _accepted_changes(prefix, digest, flips):
  """(file, position, flip) of the single-byte changes that load accepts."""
  accepted = []
  for suffix in SUFFIXES:
    path = prefix + suffix
    original = pathlib.Path(path).read_bytes()
    try:
      for position in range(len(original)):
        for flip in flips:
          changed = bytearray(original)
          changed[position] ^= flip
          _write(path, changed)
          if not _rejected(prefix, digest):
            accepted.append((suffix, position, flip))
    finally:
      _write(path, original)
  return accepted


def test_every_single_byte_change_is_rejected(saved_badnets_key):
  """Every byte position of every file, changed to three other values (low
  bit, high bit, all bits); the SHA-256 checks treat any change alike."""
  prefix, digest = saved_badnets_key
  assert not _accepted_changes(prefix, digest, (0x01, 0x80, 0xFF))
  assert not _rejected(prefix, digest)


def test_byte_changes_are_rejected_without_the_kept_digest(saved_badnets_key):
  """Without the digest the manifest's hashes still catch every change to
  the .npz and .json and every non-whitespace change to the manifest."""
  prefix, _ = saved_badnets_key
  assert not _accepted_changes(prefix, None, (0x01,))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_files_are_rejected(saved_badnets_key, suffix):
  prefix, digest = saved_badnets_key
  path = prefix + suffix
  original = pathlib.Path(path).read_bytes()
  try:
    for length in (0, 1, len(original) // 2, len(original) - 1):
      _write(path, original[:length])
      assert _rejected(prefix, digest)
      assert _rejected(prefix, None)
  finally:
    _write(path, original)


def test_whitespace_edit_of_manifest_is_rejected_without_digest(
    saved_badnets_key):
  prefix, _ = saved_badnets_key
  path = prefix + ".manifest.json"
  original = pathlib.Path(path).read_bytes()
  try:
    _write(path, original.replace(b"\n ", b"\n\t", 1))
    assert _rejected(prefix, None)
  finally:
    _write(path, original)


def test_load_rejects_a_wrong_digest_and_files_that_are_no_key(tmp_path,
                                                               key):
  key.save(tmp_path / "key")
  with pytest.raises(secure_files.TamperedFileError, match="digest"):
    WatermarkKey.load(tmp_path / "key", digest="0" * 64)
  secure_files.save(tmp_path / "other", {"a": np.zeros(2)}, {"x": 1})
  with pytest.raises(secure_files.TamperedFileError, match="no valid"):
    WatermarkKey.load(tmp_path / "other")
  os.remove(tmp_path / "key.npz")
  with pytest.raises(FileNotFoundError, match="key.npz"):
    WatermarkKey.load(tmp_path / "key")


def test_key_validates_its_fields():
  trigger = triggers.badnets_trigger((8, 8, 1))
  good = dict(method="badnets", trigger=trigger, target_label=0,
              num_classes=4, source_classes=(0, 1), poisoned_indices=[1, 3],
              num_samples=20, seed=np.array([0, 7], np.uint32))
  key = WatermarkKey(**good)
  assert key.targeted and key.poisoned_indices.dtype == np.int64
  assert key.poison_rate == 0.1
  assert not WatermarkKey(**{**good, "target_label": None}).targeted
  for change, message in [({"target_label": 4}, "target_label"),
                          ({"poisoned_indices": [3, 1]}, "sorted"),
                          ({"seed": np.array([0, 7])}, "uint32"),
                          ({"source_classes": (5,)}, "source_classes"),
                          ({"poisoned_indices": [1, 20]}, "index 20"),
                          ({"num_samples": 0}, "num_samples"),
                          ({"method": ""}, "method")]:
    with pytest.raises(ValueError, match=message):
      WatermarkKey(**{**good, **change})
  with pytest.raises(ValueError, match="rebuild it"):
    key.apply_trigger(np.zeros((1, 9, 9, 1), np.float32))
