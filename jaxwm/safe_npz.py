"""Reading ``.npz`` archives of plain arrays, never pickle, with errors that
name the file and say what is wrong with it.

``np.load`` reports a file that is not an archive at all as "pickled data"
(when pickle is refused) and a truncated archive as a bare ``BadZipFile`` or
``EOFError``. :func:`read_npz` tells these cases apart from the file's first
bytes and from the archive's own checks, and raises :class:`NpzFormatError`
naming the file in each.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from typing import Callable

import numpy as np

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_SIGNATURE = b"\x93NUMPY"
_PICKLE_PROTOCOL_MARK = b"\x80"
_HEAD_BYTES = 8


class NpzFormatError(ValueError):
  """A file is not a readable ``.npz`` archive of plain arrays."""


def _kind_of(head: bytes) -> str:
  """What a file that is not a zip archive appears to be, from its start."""
  if head.startswith(_NPY_SIGNATURE):
    return "a single .npy array"
  if head.startswith(_PICKLE_PROTOCOL_MARK):
    return "pickled data, which jaxwm never loads"
  if not head:
    return "empty"
  return f"a file starting with {head!r}"


def read_npz(source: str | os.PathLike | bytes, where: str,
             select: Callable[[str], bool] | None = None
             ) -> dict[str, np.ndarray]:
  """The arrays of an ``.npz`` archive, read with ``allow_pickle=False``.

  Args:
    source: the archive's path, or its bytes.
    where: how to name the archive in error messages (usually its path).
    select: ``name -> bool``; only the arrays it accepts are read (all when
      None), so that large archives need not be read whole.

  Returns:
    name -> array, the names without their ``.npy`` suffix.

  Raises:
    FileNotFoundError: ``source`` is a path that does not exist.
    NpzFormatError: the file is not a zip archive (the message says what it
      looks like instead), is truncated or corrupt, or holds object arrays.
  """
  if isinstance(source, bytes):
    head, opened = source[:_HEAD_BYTES], io.BytesIO(source)
  else:
    if not os.path.isfile(source):
      raise FileNotFoundError(f"npz file {where} does not exist.")
    with open(source, "rb") as f:
      head, opened = f.read(_HEAD_BYTES), source
  if not head.startswith(_ZIP_SIGNATURES):
    raise NpzFormatError(
        f"{where} is not an npz file (it is {_kind_of(head)}); write one "
        "with np.savez.")
  try:
    with np.load(opened, allow_pickle=False) as npz:
      return {name: _member(npz, name, where) for name in npz.files
              if select is None or select(name)}
  except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
    raise NpzFormatError(
        f"{where} is a truncated or corrupt npz file ({e}); copy or write "
        "it again.") from None


def _member(npz, name: str, where: str) -> np.ndarray:
  """One array of an open archive; anything else is an NpzFormatError."""
  try:
    value = npz[name]
  except ValueError as e:
    raise NpzFormatError(
        f"{where}: array {name!r} cannot be read as a plain array ({e}); "
        "store every array with a numeric or fixed-width string dtype."
    ) from None
  if not isinstance(value, np.ndarray):
    raise NpzFormatError(
        f"{where}: member {name!r} is not an .npy array; an npz file holds "
        "only arrays (write it with np.savez).")
  return value
