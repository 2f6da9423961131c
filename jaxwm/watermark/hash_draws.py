"""Unbiased random draws from SHA-256: seeds, integers below a bound, subsets.

A :class:`HashStream` is SHA-256 in counter mode: block ``j`` is
``SHA-256(frame(b"jaxwm/hash-stream/v1", seed, label, j))`` (``j`` as 8 bytes
big-endian), read as four 64-bit big-endian words. An integer below ``bound``
is drawn by rejection sampling: words at or above the largest multiple of
``bound`` that fits in 64 bits are discarded, so every value in
``[0, bound)`` has exactly the same probability. Streams feed the Fiat-Shamir
challenges of :mod:`jaxwm.watermark.transcript` and the labels and image seeds
of :mod:`jaxwm.watermark.trigger_sets`; because SHA-256 is a pseudo-random
function, revealing some outputs of a stream tells nothing about the others.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np

from jaxwm.watermark.commitments import frame

SEED_BYTES = 32
_WORD_BYTES = 8
_WORD_RANGE = 2**64
_STREAM_TAG = b"jaxwm/hash-stream/v1"
_SEED_TAG = b"jaxwm/seed/v1"


def seed_bytes(seed: int | bytes | None) -> bytes:
  """A 32-byte master seed.

  Args:
    seed: None for a fresh secret seed from :mod:`secrets` (the default for
      real keys); an int >= 0 or bytes for reproducible tests. Ints and bytes
      are hashed with distinct encodings, so ``0`` and ``b"\\x00"`` differ.

  Returns:
    32 bytes.
  """
  if seed is None:
    return secrets.token_bytes(SEED_BYTES)
  if isinstance(seed, (bytes, bytearray)):
    encoded = frame(b"bytes", bytes(seed))
  elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}.")
    seed = int(seed)
    encoded = frame(b"int", seed.to_bytes((seed.bit_length() + 7) // 8, "big"))
  else:
    raise TypeError(
        f"seed must be None, an int or bytes, got {type(seed).__name__}.")
  return hashlib.sha256(frame(_SEED_TAG, encoded)).digest()


class HashStream:
  """A deterministic stream of uniform draws derived from ``seed``.

  Args:
    seed: the secret or public seed bytes.
    label: names the purpose, so one seed gives independent streams.
  """

  def __init__(self, seed: bytes, label: str):
    self._prefix = (_STREAM_TAG, bytes(seed), label.encode("utf-8"))
    self._counter = 0
    self._block = b""
    self._offset = 0

  def _next_word(self) -> int:
    if self._offset == len(self._block):
      self._block = hashlib.sha256(frame(
          *self._prefix, self._counter.to_bytes(_WORD_BYTES, "big"))).digest()
      self._counter += 1
      self._offset = 0
    word = self._block[self._offset:self._offset + _WORD_BYTES]
    self._offset += _WORD_BYTES
    return int.from_bytes(word, "big")

  def randbelow(self, bound: int) -> int:
    """A uniform integer in ``[0, bound)``, ``1 <= bound <= 2**64``."""
    if not 1 <= bound <= _WORD_RANGE:
      raise ValueError(f"bound must be in [1, 2**64], got {bound}.")
    limit = _WORD_RANGE - _WORD_RANGE % bound
    while True:
      word = self._next_word()
      if word < limit:
        return word % bound

  def token(self, num_bytes: int = SEED_BYTES) -> bytes:
    """``num_bytes`` uniform bytes (e.g. a seed for one trigger image)."""
    words = -(-num_bytes // _WORD_BYTES)
    data = b"".join(
        self._next_word().to_bytes(_WORD_BYTES, "big") for _ in range(words))
    return data[:num_bytes]

  def subset(self, population: int, count: int) -> np.ndarray:
    """A uniform ``count``-subset of ``range(population)``, sorted int64.

    Partial Fisher-Yates shuffle driven by :meth:`randbelow`: every subset
    of size ``count`` is equally likely.
    """
    if not 0 <= count <= population:
      raise ValueError(
          f"cannot choose {count} distinct indices out of {population}.")
    order = np.arange(population, dtype=np.int64)
    for i in range(count):
      j = i + self.randbelow(population - i)
      order[i], order[j] = order[j], order[i]
    return np.sort(order[:count])
