"""Safe files for secrets: arrays as ``.npz`` and metadata as ``.json``, bound by
a SHA-256 manifest.

A secret (a watermark key, a trigger set, a poison) is written as three files
next to each other::

    PREFIX.npz            the arrays (``allow_pickle=False``: never executes code)
    PREFIX.json           the metadata (plain JSON)
    PREFIX.manifest.json  {"format": ..., "sha256": {"PREFIX.npz": hex, "PREFIX.json": hex}}

Loading recomputes both hashes with :mod:`hashlib` and compares them to the
manifest with :func:`hmac.compare_digest` before parsing anything, so a
truncated, tampered or swapped file is rejected before its contents are used.
The manifest protects against accidents and against edits by someone who does
not also rewrite the manifest; for protection against a deliberate forger the
owner keeps the manifest digest (:func:`manifest_digest`) out of band, e.g.
in a commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import zipfile
from typing import Any, Mapping

import numpy as np

FORMAT = "jaxwm.secure_files/v1"


class TamperedFileError(ValueError):
  """A secret file does not match its SHA-256 manifest, or cannot be parsed."""


def _paths(prefix: str) -> tuple[str, str, str]:
  prefix = os.fspath(prefix)
  for suffix in (".manifest.json", ".npz", ".json"):
    if prefix.endswith(suffix):
      prefix = prefix[: -len(suffix)]
      break
  return prefix + ".npz", prefix + ".json", prefix + ".manifest.json"


def sha256_hex(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _canonical_json(value: Any) -> bytes:
  return json.dumps(value, sort_keys=True, indent=1).encode()


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
  """An uncompressed ``.npz`` whose bytes depend on the arrays alone (fixed
  zip timestamps, sorted names), so saving a key twice gives one digest."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
    for name in sorted(arrays):
      value = np.asarray(arrays[name])
      if value.dtype == object:
        raise TypeError(
            f"array {name!r} has dtype object, which cannot be saved without "
            "pickle; convert it to a numeric or fixed-width string array.")
      member = io.BytesIO()
      np.lib.format.write_array(member, value, allow_pickle=False)
      info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
      archive.writestr(info, member.getvalue())
  return buffer.getvalue()


def _atomic_write(path: str, data: bytes) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def save(prefix: str, arrays: Mapping[str, np.ndarray],
         metadata: Mapping[str, Any]) -> str:
  """Writes ``arrays`` and ``metadata`` under ``prefix`` with a manifest.

  Args:
    prefix: path without extension, e.g. ``workdir/key``.
    arrays: name -> array; object arrays are refused (they would need pickle).
    metadata: JSON-serialisable mapping.

  Returns:
    The hex SHA-256 digest of the manifest (see :func:`manifest_digest`).
  """
  npz_path, json_path, manifest_path = _paths(prefix)
  os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
  npz_bytes = _npz_bytes(arrays)
  json_bytes = json.dumps(dict(metadata), sort_keys=True, indent=1).encode()
  manifest = {
      "format": FORMAT,
      "sha256": {
          os.path.basename(npz_path): sha256_hex(npz_bytes),
          os.path.basename(json_path): sha256_hex(json_bytes),
      },
  }
  manifest_bytes = _canonical_json(manifest)
  _atomic_write(npz_path, npz_bytes)
  _atomic_write(json_path, json_bytes)
  _atomic_write(manifest_path, manifest_bytes)
  return sha256_hex(manifest_bytes)


def manifest_digest(prefix: str) -> str:
  """Hex SHA-256 of the manifest file: one value that pins all three files."""
  with open(_paths(prefix)[2], "rb") as f:
    return sha256_hex(f.read())


def _read(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{path} is missing; a saved secret needs its .npz, .json and "
        ".manifest.json files side by side.") from None


def load(prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Loads what :func:`save` wrote, after checking every SHA-256 hash.

  Raises:
    TamperedFileError: a file differs from its manifest entry or the manifest
      itself is malformed. The message names the file.
  """
  npz_path, json_path, manifest_path = _paths(prefix)
  manifest_bytes = _read(manifest_path)
  try:
    manifest = json.loads(manifest_bytes)
    if not isinstance(manifest, dict):
      raise TypeError(type(manifest).__name__)
    expected = manifest["sha256"]
    if not isinstance(expected, dict):
      raise TypeError(type(expected).__name__)
    if manifest["format"] != FORMAT:
      raise ValueError(f"format {manifest['format']!r} is not {FORMAT!r}")
    if _canonical_json(manifest) != manifest_bytes:
      raise ValueError("the manifest is not in its canonical form")
  except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
    raise TamperedFileError(
        f"{manifest_path} is not a valid jaxwm manifest ({e}); restore it "
        "from the owner's copy.") from None
  contents = {}
  for path in (npz_path, json_path):
    data = _read(path)
    want = expected.get(os.path.basename(path))
    if not isinstance(want, str) or not hmac.compare_digest(
        sha256_hex(data).encode(), want.encode()):
      raise TamperedFileError(
          f"{path} does not match the SHA-256 in {manifest_path}: the file "
          "was truncated or modified. Use an unmodified copy of the key.")
    contents[path] = data
  try:
    with np.load(io.BytesIO(contents[npz_path]), allow_pickle=False) as npz:
      arrays = {name: npz[name] for name in npz.files}
    metadata = json.loads(contents[json_path])
  except (ValueError, OSError) as e:
    raise TamperedFileError(f"cannot parse {npz_path} or {json_path}: {e}") from e
  return arrays, metadata
