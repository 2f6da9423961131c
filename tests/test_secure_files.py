"""Secret files: hashes, determinism, and refusal of anything altered."""

import json

import numpy as np
import pytest

from jaxwm import secure_files

ARRAYS = {"b": np.arange(6, dtype=np.int32).reshape(2, 3),
          "a": np.linspace(0, 1, 5)}


def test_round_trip_and_reproducible_bytes(tmp_path):
  first = secure_files.save(tmp_path / "k", ARRAYS, {"seed": 3})
  npz = (tmp_path / "k.npz").read_bytes()
  second = secure_files.save(tmp_path / "k", ARRAYS, {"seed": 3})
  assert first == second == secure_files.manifest_digest(tmp_path / "k")
  assert (tmp_path / "k.npz").read_bytes() == npz
  arrays, metadata = secure_files.load(tmp_path / "k")
  assert metadata == {"seed": 3}
  for name, value in ARRAYS.items():
    np.testing.assert_array_equal(arrays[name], value)
    assert arrays[name].dtype == value.dtype


@pytest.mark.parametrize("suffix", [".npz", ".json", ".manifest.json"])
def test_every_byte_change_is_rejected(tmp_path, suffix):
  secure_files.save(tmp_path / "k", ARRAYS, {"seed": 3})
  path = tmp_path / ("k" + suffix)
  original = path.read_bytes()
  for position in range(len(original)):
    changed = bytearray(original)
    changed[position] ^= 0x01
    path.write_bytes(bytes(changed))
    with pytest.raises((secure_files.TamperedFileError, FileNotFoundError)):
      secure_files.load(tmp_path / "k")
  path.write_bytes(original)
  secure_files.load(tmp_path / "k")


def test_object_arrays_are_refused(tmp_path):
  with pytest.raises(TypeError, match="pickle"):
    secure_files.save(tmp_path / "k", {"x": np.array([{}], dtype=object)}, {})


def test_manifest_must_be_canonical(tmp_path):
  secure_files.save(tmp_path / "k", ARRAYS, {})
  path = tmp_path / "k.manifest.json"
  path.write_text(json.dumps(json.loads(path.read_text())))  # same content
  with pytest.raises(secure_files.TamperedFileError, match="canonical"):
    secure_files.load(tmp_path / "k")
