"""Fiat-Shamir transcripts: challenges derived with SHA-256 from everything
said so far (Adi et al., Appendix A.1.2, "made non-interactive ... using the
Fiat-Shamir transform").

A transcript absorbs, in order, the protocol label and then labelled messages
(the session id, the statement, every value the prover sends). Each message is
absorbed as ``frame(label, value)`` (see :func:`commitments.frame`), so the
byte string hashed is an unambiguous record of the conversation. A challenge
is the SHA-256 digest of that record plus the challenge's own label; it seeds
a :class:`hash_draws.HashStream` that selects indices without bias. Any change
to any absorbed value, to the order of the messages or to a label gives an
unrelated challenge; an identical conversation gives the identical challenge.
"""

from __future__ import annotations

import hashlib

import numpy as np

from jaxwm.watermark.commitments import frame
from jaxwm.watermark.hash_draws import HashStream

_TRANSCRIPT_TAG = b"jaxwm/transcript/v1"


class Transcript:
  """A running SHA-256 hash of a labelled, length-prefixed conversation.

  Args:
    protocol: names the protocol and its version, e.g.
      ``"jaxwm/adi/public-verify/v1"``; transcripts of different protocols
      never share challenges.
  """

  def __init__(self, protocol: str):
    self._hash = hashlib.sha256(
        frame(_TRANSCRIPT_TAG, protocol.encode("utf-8")))

  def append(self, label: str, value: bytes) -> None:
    """Absorbs one message ``value`` under ``label``."""
    self._hash.update(frame(b"message", label.encode("utf-8"), bytes(value)))

  def challenge_subset(self, label: str, population: int,
                       count: int) -> np.ndarray:
    """A challenge: ``count`` distinct indices of ``range(population)``.

    Every ``count``-subset is equally likely when SHA-256 is modelled as a
    random oracle. The challenge is absorbed into the transcript afterwards,
    so a later challenge depends on this one.

    Returns:
      Sorted int64 array [count].
    """
    state = self._hash.copy()
    state.update(frame(b"challenge", label.encode("utf-8")))
    seed = state.digest()
    self._hash.update(frame(b"challenge", label.encode("utf-8"), seed))
    return HashStream(seed, label).subset(population, count)
