"""Saving and loading watermark keys through :mod:`jaxwm.secure_files`.

Keys inherit :class:`SavedKey`, which gives them ``save`` and ``load`` from
three methods they define: ``to_arrays``, ``to_metadata`` and ``from_arrays``.
Each key file records its ``kind`` (e.g. ``"jaxwm/adi/marking-key/v1"``) in
its metadata, so a verification key is never mistaken for a marking key.
Arrays are read with ``allow_pickle=False`` by :func:`secure_files.load`; the
helpers here check that every expected entry is present with the right type
and report anything else as a :class:`secure_files.TamperedFileError`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from jaxwm import secure_files
from jaxwm.secure_files import TamperedFileError

_KIND = "kind"
T = TypeVar("T")


def save_key(prefix: str, kind: str, arrays: Mapping[str, np.ndarray],
             metadata: Mapping[str, Any]) -> str:
  """Saves a key of ``kind``; returns the manifest's SHA-256 hex digest."""
  return secure_files.save(prefix, arrays, {**metadata, _KIND: kind})


def load_key(prefix: str, kind: str, digest: str | None = None
             ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Loads a key saved by :func:`save_key`, after checking its hashes.

  Args:
    prefix: the path given to :func:`save_key`.
    kind: the kind of key expected.
    digest: the hex digest :func:`save_key` returned, or None (see
      :func:`secure_files.load`).

  Raises:
    TamperedFileError: hashes differ (or differ from ``digest``), the files
      were renamed, or they hold another kind of key.
  """
  arrays, metadata = secure_files.load(prefix, digest)
  found = metadata.get(_KIND)
  if found != kind:
    raise TamperedFileError(
        f"{prefix} holds {found!r}, not a {kind!r}; pass the matching key "
        "file.")
  return arrays, metadata


def entry(mapping: Mapping[str, Any], name: str, prefix: str) -> Any:
  """``mapping[name]``, or TamperedFileError naming the missing entry."""
  if name not in mapping:
    raise TamperedFileError(
        f"{prefix} lacks the entry {name!r}; the key file is incomplete. Use "
        "the files written by the key's save method.")
  return mapping[name]


def getter(arrays: Mapping[str, np.ndarray], path: str,
           prefix: str = "") -> Callable[[str], np.ndarray]:
  """``name -> arrays[prefix + name]``, raising like :func:`entry`."""
  return lambda name: entry(arrays, prefix + name, path)


def int_entry(metadata: Mapping[str, Any], name: str, prefix: str) -> int:
  """An integer metadata entry (JSON booleans and floats are refused)."""
  value = entry(metadata, name, prefix)
  if isinstance(value, bool) or not isinstance(value, int):
    raise TamperedFileError(
        f"{prefix}: metadata entry {name!r} must be an integer, got "
        f"{value!r}.")
  return value


def hex_entry(metadata: Mapping[str, Any], name: str, prefix: str) -> bytes:
  """A metadata entry holding bytes as a hex string."""
  value = entry(metadata, name, prefix)
  try:
    return bytes.fromhex(value)
  except (TypeError, ValueError):
    raise TamperedFileError(
        f"{prefix}: metadata entry {name!r} must be a hex string, got "
        f"{value!r}.") from None


def construct(prefix: str, build: Callable[[], T]) -> T:
  """Runs ``build()``, reporting invalid contents as TamperedFileError."""
  try:
    return build()
  except TamperedFileError:
    raise
  except (ValueError, TypeError) as e:
    raise TamperedFileError(
        f"{prefix} does not hold a valid key ({e}); use an unmodified copy."
    ) from e


class SavedKey:
  """Mixin giving ``save``/``load`` to a key class.

  The class sets ``KIND`` and defines ``to_arrays(prefix="") -> dict`` (its
  arrays, names prefixed so keys can nest), ``to_metadata() -> dict`` (JSON
  values) and their inverse, the classmethod
  ``from_arrays(arrays, metadata, path, prefix="")``, which reports missing
  or invalid entries as TamperedFileError naming ``path``.
  """

  KIND = ""

  def save(self, prefix: str) -> str:
    """Writes PREFIX.npz/.json/.manifest.json; returns the manifest digest."""
    return save_key(prefix, self.KIND, self.to_arrays(), self.to_metadata())

  @classmethod
  def load(cls, prefix: str, digest: str | None = None):
    """Loads a key written by :meth:`save`, checking its SHA-256 manifest.

    Args:
      prefix: the path given to :meth:`save`.
      digest: the hex digest :meth:`save` returned; pass it to refuse files
        forged together with a fresh manifest.

    Raises:
      TamperedFileError: the files were modified, renamed or forged (when
        ``digest`` is given), or hold an invalid key; the message names the
        file, or the field and its value.
    """
    arrays, metadata = load_key(prefix, cls.KIND, digest)
    return cls.from_arrays(arrays, metadata, prefix)
