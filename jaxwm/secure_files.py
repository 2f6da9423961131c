"""Safe files for secrets: arrays as ``.npz`` and metadata as ``.json``, bound by
a SHA-256 manifest.

A secret (a watermark key, a trigger set, a poison) is written as three files
next to each other::

    PREFIX.npz            the arrays (``allow_pickle=False``: never executes code)
    PREFIX.json           the metadata (plain JSON)
    PREFIX.manifest.json  {"format": ..., "sha256": {"PREFIX.npz": hex, "PREFIX.json": hex}}

Loading recomputes both hashes with :mod:`hashlib` and compares them to the
manifest with :func:`hmac.compare_digest` before parsing anything, so a
truncated, tampered or swapped file is rejected before its contents are used;
files renamed after saving are reported as renamed (the manifest records
their names). The manifest protects against accidents and against edits by
someone who does not also rewrite the manifest. Against a deliberate forger,
who can write a fresh manifest for forged files, the owner keeps the digest
that :func:`save` returns apart from the files (e.g. in a commitment or a
time-stamped post) and passes it to ``load(prefix, digest=...)``.
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

from jaxwm import fields
from jaxwm import safe_npz

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


def atomic_write(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file and a rename, so
  that a crash leaves the old file or the new one, never a truncated one."""
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
  atomic_write(npz_path, npz_bytes)
  atomic_write(json_path, json_bytes)
  atomic_write(manifest_path, manifest_bytes)
  return sha256_hex(manifest_bytes)


def manifest_digest(prefix: str) -> str:
  """Hex SHA-256 of the manifest file: one value that pins all three files."""
  return sha256_hex(read_bytes(_paths(prefix)[2]))


_KEY_FILES_HINT = ("a saved secret needs its .npz, .json and .manifest.json "
                   "files side by side.")


def read_bytes(path: str, hint: str = _KEY_FILES_HINT) -> bytes:
  """The file's bytes; a missing file is named with ``hint`` on the fix."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path} is missing; {hint}") from None


def _parse_manifest(manifest_path: str, manifest_bytes: bytes
                    ) -> dict[str, str]:
  """The manifest's ``file name -> hex SHA-256`` table, checked."""
  try:
    manifest = json.loads(manifest_bytes)
    if not isinstance(manifest, dict):
      raise TypeError(type(manifest).__name__)
    expected = manifest["sha256"]
    if not isinstance(expected, dict) or len(expected) != 2 or not all(
        isinstance(v, str) for v in expected.values()):
      raise TypeError("its sha256 entry must map two file names to hashes")
    if manifest["format"] != FORMAT:
      raise ValueError(f"format {manifest['format']!r} is not {FORMAT!r}")
    if _canonical_json(manifest) != manifest_bytes:
      raise ValueError("the manifest is not in its canonical form")
  except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
    raise TamperedFileError(
        f"{manifest_path} is not a valid jaxwm manifest ({e}); restore it "
        "from the owner's copy.") from None
  return expected


def _check_names(paths: tuple[str, str], manifest_path: str,
                 expected: Mapping[str, str],
                 contents: Mapping[str, bytes]) -> None:
  """Refuses files whose names differ from those the manifest records.

  A set of files renamed together keeps contents that match the hashes under
  their recorded names: that is reported as a rename, with the names to
  restore, and anything else as a modification.
  """
  names = tuple(os.path.basename(path) for path in paths)
  if set(names) == set(expected):
    return
  recorded = sorted(expected)
  hashes = {sha256_hex(contents[path]) for path in paths}
  if hashes == set(expected.values()):
    stem = os.path.commonprefix(recorded).rstrip(".")
    raise TamperedFileError(
        f"{manifest_path} records the files as {recorded}, but they were "
        f"found as {sorted(names)}: the files were renamed (their contents "
        f"are intact). Rename all three back to {stem}.npz, {stem}.json "
        f"and {stem}.manifest.json, or load them under their original "
        "names.")
  raise TamperedFileError(
      f"{manifest_path} records the files {recorded}, not {sorted(names)}, "
      "and their contents match neither: the files were renamed and "
      "modified, or come from different keys. Use an unmodified copy of "
      "the key.")


def load(prefix: str, digest: str | None = None
         ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Loads what :func:`save` wrote, after checking every SHA-256 hash.

  Args:
    prefix: the path given to :func:`save`.
    digest: the hex digest :func:`save` returned, kept by the owner apart
      from the files. When given, the manifest must hash to it (compared
      with :func:`hmac.compare_digest` before anything is parsed), which
      also refuses files a forger wrote together with a fresh manifest.

  Raises:
    TamperedFileError: the manifest differs from ``digest``, a file differs
      from its manifest entry, the files were renamed, the manifest itself
      is malformed, or the contents cannot be parsed. The message names the
      file.
    ValueError: ``digest`` is not a SHA-256 hex string.
  """
  npz_path, json_path, manifest_path = _paths(prefix)
  if digest is not None:
    digest = fields.hex_digest(digest, "digest", "that save returned")
  manifest_bytes = read_bytes(manifest_path)
  if digest is not None and not hmac.compare_digest(
      sha256_hex(manifest_bytes).encode(), digest.encode()):
    raise TamperedFileError(
        f"{manifest_path} does not hash to the digest you kept "
        f"({digest}): the files were replaced or modified since they were "
        "saved. Use the owner's copy of the key.")
  expected = _parse_manifest(manifest_path, manifest_bytes)
  contents = {path: read_bytes(path) for path in (npz_path, json_path)}
  _check_names((npz_path, json_path), manifest_path, expected, contents)
  for path, data in contents.items():
    if not hmac.compare_digest(sha256_hex(data).encode(),
                               expected[os.path.basename(path)].encode()):
      raise TamperedFileError(
          f"{path} does not match the SHA-256 in {manifest_path}: the file "
          "was truncated or modified. Use an unmodified copy of the key.")
  try:
    arrays = safe_npz.read_npz(contents[npz_path], npz_path)
    metadata = json.loads(contents[json_path])
  except (ValueError, UnicodeDecodeError) as e:
    raise TamperedFileError(
        f"cannot parse {npz_path} or {json_path}: {e}") from None
  if not isinstance(metadata, dict):
    raise TamperedFileError(
        f"{json_path} holds a JSON {type(metadata).__name__}, not an object "
        "of metadata.")
  return arrays, metadata
