"""SHA-256 hash commitments (Com, Open of Adi et al., Section 2.4) and the
canonical byte encoding of the arrays and labels they commit to.

Encoding. Every encoded value is a *frame*: a sequence of fields, each an
8-byte big-endian length followed by the field's bytes, so that no two
different sequences of fields encode to the same bytes::

    frame(f_1, ..., f_k) = len(f_1) || f_1 || ... || len(f_k) || f_k

The first field of every frame is a domain tag naming what is encoded:

* an array ``x`` (bool, integer or float) is
  ``frame(b"jaxwm/array/v1", dtype, shape, data)`` with ``dtype`` the ASCII
  NumPy type string in little-endian form (``b"|u1"``, ``b"<i4"``,
  ``b"<f4"``), ``shape`` the dimensions as 8-byte big-endian unsigned integers
  (their count is the rank) and ``data`` the C-order little-endian element
  bytes, so dtype, shape and values are all bound;
* a class label ``y`` is ``frame(b"jaxwm/label/v1", y as 8 bytes big-endian)``.

Commitment. With a 32-byte opening ``r`` drawn with :mod:`secrets`::

    Com(m, r) = SHA-256(frame(b"jaxwm/commitment/v1", r, m))
    Open(c, m, r) = 1  iff  Com(m, r) == c   (compared with hmac.compare_digest)

Binding follows from the collision resistance of SHA-256 together with the
injective encoding; hiding holds when SHA-256 is modelled as a random oracle
(the 256-bit opening makes the commitment statistically close to uniform for
any message), which is the hash-based instantiation the paper suggests in its
implementation details (Section 3.2).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Sequence

import numpy as np

OPENING_BYTES = 32
DIGEST_BYTES = 32
_LENGTH_BYTES = 8
_ARRAY_TAG = b"jaxwm/array/v1"
_LABEL_TAG = b"jaxwm/label/v1"
_COMMITMENT_TAG = b"jaxwm/commitment/v1"
_ARRAY_KINDS = "biuf"


def frame(*fields: bytes) -> bytes:
  """Length-prefixed concatenation: 8-byte big-endian length, then bytes."""
  parts = []
  for field in fields:
    if not isinstance(field, (bytes, bytearray)):
      raise TypeError(
          f"frame fields must be bytes, got {type(field).__name__}; encode "
          "arrays with encode_array and labels with encode_label first.")
    parts.append(len(field).to_bytes(_LENGTH_BYTES, "big"))
    parts.append(bytes(field))
  return b"".join(parts)


def encode_array(x: np.ndarray) -> bytes:
  """Canonical encoding of an array, binding dtype, shape and values.

  Args:
    x: bool, integer or float array of any shape, e.g. a uint8 image
      [H, W, C].

  Returns:
    ``frame(b"jaxwm/array/v1", dtype, shape, data)`` (module docstring).
  """
  x = np.asarray(x)
  if x.dtype.kind not in _ARRAY_KINDS:
    raise TypeError(
        f"cannot encode an array of dtype {x.dtype}; only bool, integer and "
        "float arrays have a canonical encoding. Convert the array first.")
  little = x.dtype.newbyteorder("<")
  data = np.ascontiguousarray(x, dtype=little).tobytes()
  shape = b"".join(int(d).to_bytes(_LENGTH_BYTES, "big") for d in x.shape)
  return frame(_ARRAY_TAG, little.str.encode("ascii"), shape, data)


def encode_label(label: int) -> bytes:
  """Canonical encoding of a class label in [0, 2**63)."""
  if isinstance(label, (bool, np.bool_)) or not isinstance(
      label, (int, np.integer)):
    raise TypeError(
        f"label must be an integer, got {label!r} of type "
        f"{type(label).__name__}.")
  label = int(label)
  if not 0 <= label < 2**63:
    raise ValueError(f"label {label} is out of range [0, 2**63).")
  return frame(_LABEL_TAG, label.to_bytes(_LENGTH_BYTES, "big"))


def new_openings(count: int) -> np.ndarray:
  """``count`` fresh 32-byte openings from :mod:`secrets`, uint8 [count, 32]."""
  if count < 0:
    raise ValueError(f"count must be >= 0, got {count}.")
  data = secrets.token_bytes(count * OPENING_BYTES)
  return np.frombuffer(data, np.uint8).reshape(count, OPENING_BYTES).copy()


def commit(message: bytes, opening: bytes) -> bytes:
  """Com(m, r): the 32-byte SHA-256 commitment to ``message``."""
  opening = bytes(opening)
  if len(opening) != OPENING_BYTES:
    raise ValueError(
        f"an opening must be {OPENING_BYTES} bytes, got {len(opening)}; draw "
        "it with new_openings.")
  return hashlib.sha256(frame(_COMMITMENT_TAG, opening, message)).digest()


def opens(commitment: bytes, message: bytes, opening: bytes) -> bool:
  """Open(c, m, r): whether ``(message, opening)`` opens ``commitment``.

  Openings or commitments of the wrong length do not open (False).
  """
  opening, commitment = bytes(opening), bytes(commitment)
  if len(opening) != OPENING_BYTES or len(commitment) != DIGEST_BYTES:
    return False
  return hmac.compare_digest(commit(message, opening), commitment)


def commit_each(messages: Sequence[bytes], openings: np.ndarray) -> np.ndarray:
  """Commitments to ``messages[i]`` with ``openings[i]``, uint8 [n, 32]."""
  openings = np.asarray(openings)
  if len(messages) != openings.shape[0]:
    raise ValueError(
        f"{len(messages)} messages but {openings.shape[0]} openings; pass one "
        "opening per message.")
  digests = b"".join(
      commit(m, r.tobytes()) for m, r in zip(messages, openings))
  return np.frombuffer(digests, np.uint8).reshape(len(messages), DIGEST_BYTES)


def open_each(commitments: np.ndarray, messages: Sequence[bytes],
              openings: np.ndarray) -> np.ndarray:
  """Whether each ``(messages[i], openings[i])`` opens ``commitments[i]``.

  Args:
    commitments: uint8 [n, 32].
    messages: n encoded messages.
    openings: uint8 [n, 32].

  Returns:
    bool [n].
  """
  if not len(commitments) == len(messages) == len(openings):
    raise ValueError(
        f"got {len(commitments)} commitments, {len(messages)} messages and "
        f"{len(openings)} openings; they must correspond one to one.")
  return np.array([
      opens(c.tobytes(), m, r.tobytes())
      for c, m, r in zip(commitments, messages, openings)
  ], dtype=bool)
