"""Strict reader for IDX files (the (Fashion-)MNIST format), plain or gzip.

An IDX file is a big-endian header followed by raw data::

    bytes 0-1   0x00 0x00
    byte  2     element type (0x08: unsigned byte)
    byte  3     number of dimensions D
    D x uint32  the size of each dimension
    ...         prod(sizes) elements, row-major

so the magic number (bytes 0-3 as one uint32) is 0x00000803 for a
[N, H, W] uint8 image file and 0x00000801 for an [N] uint8 label file. Every
check below raises :class:`IdxFormatError` naming the file, so a truncated
download or a swapped file is caught before any of its content is used.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_GZIP_SIGNATURE = b"\x1f\x8b"


class IdxFormatError(ValueError):
  """An IDX file is corrupt, truncated or not the kind of IDX file expected."""


def _read_bytes(path: str) -> bytes:
  """The file's content, gunzipped when it starts with the gzip signature."""
  with open(path, "rb") as f:
    raw = f.read()
  if not raw.startswith(_GZIP_SIGNATURE):
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise IdxFormatError(
        f"{path}: corrupt or truncated gzip data ({e}); download or install "
        "the file again.") from e


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
  """Reads one uint8 IDX file and checks its header against its size.

  Args:
    path: an IDX file, optionally gzip-compressed (detected from its content,
      not its name).
    magic: the expected magic number, :data:`IMAGES_MAGIC` or
      :data:`LABELS_MAGIC` (or ``0x0800 + D`` for D dimensions).

  Returns:
    uint8 array with the D dimensions declared in the header.

  Raises:
    IdxFormatError: wrong magic number, or a byte size that disagrees with
      the declared dimensions (truncated or padded file).
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  if len(data) < 4:
    raise IdxFormatError(
        f"{path}: {len(data)} bytes is too short for an IDX header; download "
        "or install the file again.")
  found = int.from_bytes(data[:4], "big")
  if found != magic:
    raise IdxFormatError(
        f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} "
        f"({_describe(magic)}); check that the right file was given.")
  ndim = data[3]
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise IdxFormatError(
        f"{path}: truncated header ({len(data)} bytes, need {header_size}); "
        "download or install the file again.")
  shape = tuple(
      int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(ndim))
  expected = header_size + int(np.prod(shape, dtype=np.int64))
  if len(data) != expected:
    raise IdxFormatError(
        f"{path}: header declares shape {shape} ({expected} bytes) but the "
        f"file holds {len(data)} bytes; it is truncated or corrupt, download "
        "or install it again.")
  return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _describe(magic: int) -> str:
  if magic == IMAGES_MAGIC:
    return "uint8 images [N, H, W]"
  if magic == LABELS_MAGIC:
    return "uint8 labels [N]"
  return f"uint8, {magic & 0xff} dimensions"


def read_images_and_labels(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads an IDX image file and its IDX label file.

  Args:
    images_path: IDX file with magic 0x00000803.
    labels_path: IDX file with magic 0x00000801.

  Returns:
    (images uint8 [N, H, W], labels uint8 [N]), read-only views of the files.

  Raises:
    IdxFormatError: a malformed file, or image and label counts that differ.
  """
  images = read_idx(images_path, IMAGES_MAGIC)
  labels = read_idx(labels_path, LABELS_MAGIC)
  if images.shape[0] != labels.shape[0]:
    raise IdxFormatError(
        f"{os.fspath(images_path)} holds {images.shape[0]} images but "
        f"{os.fspath(labels_path)} holds {labels.shape[0]} labels; the two "
        "files must come from the same split.")
  return images, labels
