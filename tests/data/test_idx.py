"""Tests for jaxwm.data.idx on small hand-written IDX files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from jaxwm.data import idx

IMAGES = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
LABELS = np.array([7, 0, 9], np.uint8)


def _idx_bytes(array: np.ndarray) -> bytes:
  """Magic 0x0000080D (uint8, D dimensions), D big-endian sizes, the data."""
  shape = np.asarray(array.shape, ">u4").tobytes()
  return bytes([0, 0, 8, array.ndim]) + shape + array.tobytes()


def _write(path, data: bytes) -> str:
  path.write_bytes(data)
  return str(path)


def test_header_layout_matches_the_idx_format():
  # Hand-written: magic 0x00000803, then 3, 2, 2 as big-endian uint32.
  assert _idx_bytes(IMAGES)[:16] == bytes.fromhex(
      "00000803" "00000003" "00000002" "00000002")


def test_reads_images_and_labels(tmp_path):
  images, labels = idx.read_images_and_labels(
      _write(tmp_path / "img", _idx_bytes(IMAGES)),
      _write(tmp_path / "lab", _idx_bytes(LABELS)))
  np.testing.assert_array_equal(images, IMAGES)
  np.testing.assert_array_equal(labels, LABELS)
  assert images.dtype == np.uint8 and not images.flags.writeable


def test_gzip_is_detected_from_the_content_not_the_name(tmp_path):
  path = _write(tmp_path / "images-no-suffix",
                gzip.compress(_idx_bytes(IMAGES)))
  np.testing.assert_array_equal(idx.read_idx(path, idx.IMAGES_MAGIC), IMAGES)


def test_wrong_magic_number_names_the_file(tmp_path):
  path = _write(tmp_path / "labels-given-as-images", _idx_bytes(LABELS))
  with pytest.raises(idx.IdxFormatError,
                     match=r"labels-given-as-images: magic number 0x00000801, "
                     r"expected 0x00000803"):
    idx.read_idx(path, idx.IMAGES_MAGIC)


def test_truncated_file_is_rejected(tmp_path):
  path = _write(tmp_path / "cut", _idx_bytes(IMAGES)[:-1])
  with pytest.raises(idx.IdxFormatError,
                     match=r"cut: header declares shape \(3, 2, 2\) \(28 "
                     r"bytes\) but the file holds 27 bytes"):
    idx.read_idx(path, idx.IMAGES_MAGIC)


def test_padded_file_is_rejected(tmp_path):
  path = _write(tmp_path / "padded", _idx_bytes(LABELS) + b"\0")
  with pytest.raises(idx.IdxFormatError, match=r"\(11 bytes\).*holds 12"):
    idx.read_idx(path, idx.LABELS_MAGIC)


def test_file_shorter_than_a_header_is_rejected(tmp_path):
  path = _write(tmp_path / "stub", b"\0\0")
  with pytest.raises(idx.IdxFormatError, match="stub: 2 bytes is too short"):
    idx.read_idx(path, idx.LABELS_MAGIC)


def test_truncated_gzip_names_the_file(tmp_path):
  compressed = gzip.compress(_idx_bytes(IMAGES))
  path = _write(tmp_path / "cut.gz", compressed[:len(compressed) // 2])
  with pytest.raises(idx.IdxFormatError,
                     match=r"cut.gz: corrupt or truncated gzip"):
    idx.read_idx(path, idx.IMAGES_MAGIC)


def test_image_and_label_counts_must_agree(tmp_path):
  with pytest.raises(idx.IdxFormatError,
                     match=r"img holds 3 images but .*lab holds 2 labels"):
    idx.read_images_and_labels(
        _write(tmp_path / "img", _idx_bytes(IMAGES)),
        _write(tmp_path / "lab", _idx_bytes(LABELS[:2])))
