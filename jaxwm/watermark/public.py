"""Publicly verifiable watermark: cut-and-choose made non-interactive with
Fiat-Shamir (Adi et al., Section 3.2 and Appendix A.1).

Key generation, PKeyGen of Appendix A.1.2 (:func:`public_keygen`):

1. KeyGen(l) with l = 4n candidates: abstract images, uniform labels, and a
   commitment to every image and every label (:mod:`jaxwm.watermark.adi`).
2. The challenge e selects l/2 = 2n candidates, uniformly among all subsets
   of that size, from a SHA-256 transcript binding the protocol label, the
   key id and the statement (all commitments, K, the image shape and the
   number of triggers opened per session). The key id is not chosen: it is
   a hash of the statement (:func:`derive_key_id`), and a key whose stored
   id differs is refused.
3. The verification key vk_p = (vk, mk|_1^e) publishes the commitments and
   opens the selected half (the *audit*); the marking key mk_p = (mk, e)
   keeps the other half private, and Mark embeds only that half
   (:attr:`PublicMarkingKey.triggers`).

Verification, PVerify of Appendix A.1.3 (:func:`public_verify`):

1. Recompute e from the transcript and check that vk_p opens exactly those
   candidates (paper step 1) and that they open their commitments (steps
   2a, 2b).
2. Instead of the paper's zero-knowledge argument on the private half (steps
   3, 4), which is out of scope here, the verifier picks a fresh session id;
   a second challenge, from a transcript binding the protocol label, the
   session id, the statement and every value the prover has sent (the whole
   of vk_p, audit included), selects ``opened_per_session`` of the 2n private
   triggers. The prover opens them (:func:`disclose`); the verifier checks
   the openings and tests the model's agreement with the opened labels
   (exact binomial test against 1/K, :func:`adi.decide_agreement`). Any
   mismatch is rejected before the model is queried.

What remains trusted:

* Step 2c of the paper, "T_L != f(t)" (the audit candidates are out of the
  data distribution and their labels are not their true classes), is a human
  judgement on the opened images; it is not automated. Cut-and-choose bounds
  what it misses: b bad candidates all escape the audit with probability
  C(l - b, l/2) / C(l, l/2) <= 2^-b per key the prover tries, so hiding b bad
  candidates costs about 2^b key generations. This holds because nothing in
  the keygen transcript is the prover's free choice: the challenge is a
  function of the commitments alone, so another challenge needs fresh
  openings and l new commitments (a key generation). A key id the prover
  could pick would let him draw a new challenge for one hash per try.
* vk_p was published (time-stamped) before the suspect model existed, so the
  committed labels are independent of it and the binomial null holds. A
  verifier passes the published :meth:`PublicVerificationKey.digest` to
  :func:`public_verify`, which refuses any other key.
* The session id is chosen by the verifier, fresh and unpredictable (e.g.
  ``secrets.token_bytes(32)`` or a public randomness beacon), never by the
  prover: a prover free to choose it could try sessions until the challenge
  falls on candidates the model happens to agree with.
* SHA-256 behaves as a random oracle (hiding commitments, Fiat-Shamir).

How many verifications a key supports. The ownership claim stays sound for
any number of sessions: a model that was not marked agrees with the opened
labels by chance only, and the prover cannot choose what is opened. What wears
out is secrecy: opened triggers are public, so a model holder may fine-tune
them away (this is the "constant number of times" setting of Section 3.2).
Challenges of different sessions are independent, so with m =
``opened_per_session`` of 2n private triggers, session s opens in expectation
m (1 - m / 2n)^(s - 1) triggers never opened before. With the defaults (n =
100, m = 50) that is 50, 37.5, 28.1, 21.1, 15.8, 11.9 for sessions 1..6;
against an adversary who removes every opened trigger while the fresh ones
keep agreeing, a K = 10 model still verifies at p < 1e-6 for about 5
sessions. For more, generate a larger key (n) before marking.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any, Mapping

import numpy as np

from jaxwm import fields
from jaxwm.data.dataset import Dataset
from jaxwm.watermark import adi
from jaxwm.watermark import commitments
from jaxwm.watermark import key_files
from jaxwm.watermark.transcript import Transcript

KEYGEN_PROTOCOL = "jaxwm/adi/public-keygen/v1"
VERIFY_PROTOCOL = "jaxwm/adi/public-verify/v1"
CANDIDATES_PER_TRIGGER = 4
KEY_ID_BYTES = 16
_KEY_ID_TAG = b"jaxwm/adi/public-key-id/v1"
PUBLIC_MARKING_KEY_KIND = "jaxwm/adi/public-marking-key/v1"
PUBLIC_VERIFICATION_KEY_KIND = "jaxwm/adi/public-verification-key/v1"
DISCLOSURE_KIND = "jaxwm/adi/disclosure/v1"
_AUDIT = "audit_"


class ChallengeMismatchError(adi.KeyMismatchError):
  """Opened candidates are not the ones the Fiat-Shamir challenge selects."""


def _check_indices(indices, population: int) -> np.ndarray:
  indices = np.asarray(indices)
  if (indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer) or
      np.any(indices < 0) or np.any(indices >= population) or
      np.any(np.diff(indices) <= 0)):
    raise ValueError(
        f"indices must be sorted distinct integers in [0, {population}), got "
        f"{indices.dtype} {indices.ravel()[:10].tolist()}...; use the indices "
        "of a challenge.")
  return indices.astype(np.int64)


def _count_bytes(count: int) -> bytes:
  return commitments.encode_array(np.array(count, np.int64))


def _session_bytes(session: bytes | str) -> bytes:
  session = session.encode("utf-8") if isinstance(session, str) else session
  if not isinstance(session, bytes) or not session:
    raise ValueError(
        f"session must be non-empty bytes or str chosen by the verifier, got "
        f"{session!r}; e.g. secrets.token_hex(16).")
  return session


@dataclasses.dataclass(frozen=True, eq=False)
class Disclosure(key_files.SavedKey):
  """Opened candidates mk|_e: their indices, values and openings.

  Attributes:
    indices: sorted int64 [m], positions among the l candidates.
    opened: the marking key restricted to those candidates.
  """

  indices: np.ndarray
  opened: adi.MarkingKey
  KIND = DISCLOSURE_KIND

  def __post_init__(self):
    indices = np.asarray(self.indices)
    if indices.shape != (len(self.opened),):
      raise ValueError(
          f"{indices.shape} indices for {len(self.opened)} opened "
          "candidates; they must correspond one to one.")
    object.__setattr__(self, "indices",
                       _check_indices(indices, np.iinfo(np.int64).max))

  def encode(self) -> bytes:
    """Canonical encoding of every disclosed value (for transcripts)."""
    return commitments.frame(*(
        commitments.encode_array(array)
        for array in (self.indices, *self.opened.to_arrays().values())))

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + "indices": self.indices,
            **self.opened.to_arrays(prefix)}

  def to_metadata(self) -> dict[str, Any]:
    return self.opened.to_metadata()

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> Disclosure:
    opened = adi.MarkingKey.from_arrays(arrays, metadata, path, prefix)
    indices = key_files.entry(arrays, prefix + "indices", path)
    return key_files.construct(path, lambda: cls(indices, opened))


def derive_key_id(vk: adi.VerificationKey, opened_per_session: int) -> bytes:
  """The key id: the first KEY_ID_BYTES bytes of a SHA-256 of the statement.

  The statement is every commitment, K, the image shape and
  ``opened_per_session``; the id is a function of them, never a choice.
  """
  return hashlib.sha256(commitments.frame(
      _KEY_ID_TAG, vk.statement(), _count_bytes(opened_per_session))
                        ).digest()[:KEY_ID_BYTES]


@dataclasses.dataclass(frozen=True, eq=False)
class PublicVerificationKey(key_files.SavedKey):
  """vk_p = (vk, mk|_1^e) with the parameters of the verification sessions.

  Attributes:
    commitments: the l = 4n commitment pairs.
    opened_per_session: m, private triggers opened per verification session.
    audit: the 2n candidates opened at key generation.
  """

  commitments: adi.VerificationKey
  opened_per_session: int
  audit: Disclosure
  KIND = PUBLIC_VERIFICATION_KEY_KIND

  def __post_init__(self):
    size = len(self.commitments)
    if size < CANDIDATES_PER_TRIGGER or size % CANDIDATES_PER_TRIGGER:
      raise ValueError(
          f"a public key holds l = 4n commitments, got {size}; create it "
          "with public_keygen.")
    if len(self.audit.indices) != size // 2:
      raise ValueError(
          f"the audit must open l/2 = {size // 2} candidates, got "
          f"{len(self.audit.indices)}.")
    _check_indices(self.audit.indices, size)
    object.__setattr__(self, "opened_per_session", fields.integer(
        self.opened_per_session, "opened_per_session", 1, size // 2 + 1))

  @property
  def num_classes(self) -> int:
    return self.commitments.num_classes

  @property
  def key_id(self) -> bytes:
    """:func:`derive_key_id` of the commitments: the keygen session id."""
    return derive_key_id(self.commitments, self.opened_per_session)

  def digest(self) -> str:
    """SHA-256 hex of the whole of vk_p (commitments, m, audit): the value to
    publish and to pass to :func:`public_verify`."""
    return hashlib.sha256(commitments.frame(
        PUBLIC_VERIFICATION_KEY_KIND.encode(), self.commitments.statement(),
        _count_bytes(self.opened_per_session), self.audit.encode())
                          ).hexdigest()

  @property
  def private_indices(self) -> np.ndarray:
    """Sorted int64 [2n]: the candidates not opened by the audit (e|_0)."""
    return np.setdiff1d(np.arange(len(self.commitments)), self.audit.indices)

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {**self.commitments.to_arrays(prefix),
            **self.audit.to_arrays(prefix + _AUDIT)}

  def to_metadata(self) -> dict[str, Any]:
    return {**self.commitments.to_metadata(), "key_id": self.key_id.hex(),
            "opened_per_session": self.opened_per_session}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> PublicVerificationKey:
    vk = adi.VerificationKey.from_arrays(arrays, metadata, path, prefix)
    audit = Disclosure.from_arrays(arrays, metadata, path, prefix + _AUDIT)
    stored_id = key_files.hex_entry(metadata, "key_id", path)
    opened = key_files.int_entry(metadata, "opened_per_session", path)
    key = key_files.construct(path, lambda: cls(vk, opened, audit))
    if not hmac.compare_digest(stored_id, key.key_id):
      raise key_files.TamperedFileError(
          f"{path}: key_id {stored_id.hex()} is not the id derived from the "
          f"key's commitments ({key.key_id.hex()}); a key id cannot be "
          "chosen. Use the key public_keygen returned.")
    return key


@dataclasses.dataclass(frozen=True, eq=False)
class PublicMarkingKey(key_files.SavedKey):
  """mk_p = (mk, e): all l candidates with openings, and the audit indices.

  Attributes:
    candidates: the marking key of all l = 4n candidates.
    audit_indices: sorted int64 [2n], the candidates opened at keygen (e|_1).
  """

  candidates: adi.MarkingKey
  audit_indices: np.ndarray
  KIND = PUBLIC_MARKING_KEY_KIND

  def __post_init__(self):
    object.__setattr__(
        self, "audit_indices",
        _check_indices(self.audit_indices, len(self.candidates)))

  @property
  def private_indices(self) -> np.ndarray:
    """Sorted int64 [2n]: the candidates kept secret (e|_0)."""
    return np.setdiff1d(np.arange(len(self.candidates)), self.audit_indices)

  @property
  def triggers(self) -> Dataset:
    """The private half, which Mark embeds (Appendix A.1.3)."""
    return self.candidates.triggers.take(self.private_indices)

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {**self.candidates.to_arrays(prefix),
            prefix + "audit_indices": self.audit_indices}

  def to_metadata(self) -> dict[str, Any]:
    return self.candidates.to_metadata()

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> PublicMarkingKey:
    candidates = adi.MarkingKey.from_arrays(arrays, metadata, path, prefix)
    audit = key_files.entry(arrays, prefix + "audit_indices", path)
    return key_files.construct(path, lambda: cls(candidates, audit))


def _statement(transcript: Transcript, vk: adi.VerificationKey,
               opened_per_session: int) -> None:
  transcript.append("statement", vk.statement())
  transcript.append("key_id", derive_key_id(vk, opened_per_session))
  transcript.append("opened_per_session", _count_bytes(opened_per_session))


def keygen_challenge(vk: adi.VerificationKey,
                     opened_per_session: int) -> np.ndarray:
  """The audit challenge e|_1: l/2 candidate indices, sorted int64.

  The transcript binds KEYGEN_PROTOCOL, the key id (:func:`derive_key_id`)
  as the session, and the statement (every commitment, K, image shape,
  opened_per_session): a function of the commitments alone.
  """
  transcript = Transcript(KEYGEN_PROTOCOL)
  transcript.append("session", derive_key_id(vk, opened_per_session))
  _statement(transcript, vk, opened_per_session)
  return transcript.challenge_subset("audit", len(vk), len(vk) // 2)


def session_challenge(verification_key: PublicVerificationKey,
                      session: bytes | str) -> np.ndarray:
  """The candidates to open in one verification session, sorted int64 [m].

  The transcript binds VERIFY_PROTOCOL, the verifier's session id, the
  statement and every value the prover sent in vk_p (the audit openings);
  it selects m = opened_per_session of the 2n private candidates.
  """
  transcript = Transcript(VERIFY_PROTOCOL)
  transcript.append("session", _session_bytes(session))
  _statement(transcript, verification_key.commitments,
             verification_key.opened_per_session)
  transcript.append("audit", verification_key.audit.encode())
  private = verification_key.private_indices
  return private[transcript.challenge_subset(
      "open", len(private), verification_key.opened_per_session)]


def public_keygen(n: int, num_classes: int, image_shape,
                  seed: int | bytes | None = None,
                  candidates: Dataset | None = None,
                  opened_per_session: int | None = None
                  ) -> tuple[PublicMarkingKey, PublicVerificationKey]:
  """PKeyGen (Appendix A.1.2) with l = 4n committed candidates.

  Args:
    n: the paper's backdoor size; 4n candidates, 2n audited, 2n embedded.
    num_classes: K of the model to be marked.
    image_shape: (H, W, C) of the model's inputs.
    seed: seeds the abstract candidates; None (default) uses :mod:`secrets`.
      Pass a seed only in tests.
    candidates: 4n images and labels to use instead of abstract images.
    opened_per_session: triggers opened per verification session, in
      [1, 2n]; default max(1, n // 2).

  Returns:
    (public_marking_key, public_verification_key).
  """
  size = CANDIDATES_PER_TRIGGER * int(n)
  mk, vk = adi.keygen(size, num_classes, image_shape, seed, candidates)
  if opened_per_session is None:
    opened_per_session = max(1, int(n) // 2)
  audit = keygen_challenge(vk, opened_per_session)
  return PublicMarkingKey(mk, audit), PublicVerificationKey(
      vk, opened_per_session, Disclosure(audit, mk.take(audit)))


def check_audit(verification_key: PublicVerificationKey) -> None:
  """PVerify steps 1-2: the audit answers e and opens its commitments.

  Raises:
    ChallengeMismatchError: the audit opens other candidates than e|_1.
    adi.KeyMismatchError: an audit candidate does not open.
  """
  audit = verification_key.audit
  expected = keygen_challenge(verification_key.commitments,
                              verification_key.opened_per_session)
  if not np.array_equal(audit.indices, expected):
    raise ChallengeMismatchError(
        "the audit in the verification key does not open the candidates its "
        "Fiat-Shamir challenge selects; the key was modified. Use the key "
        "that public_keygen returned.")
  adi.check_openings(audit.opened,
                     verification_key.commitments.take(audit.indices))


def disclose(marking_key: PublicMarkingKey,
             verification_key: PublicVerificationKey,
             session: bytes | str) -> Disclosure:
  """The prover's answer to a session: opens the challenged candidates.

  Raises:
    adi.KeyMismatchError: the two keys do not belong together.
  """
  adi.check_openings(marking_key.candidates, verification_key.commitments)
  if not np.array_equal(marking_key.audit_indices,
                        verification_key.audit.indices):
    raise adi.KeyMismatchError(
        "the marking key's audit indices differ from the verification key's; "
        "pass the pair that public_keygen returned.")
  indices = session_challenge(verification_key, session)
  return Disclosure(indices, marking_key.candidates.take(indices))


def public_verify(verification_key: PublicVerificationKey,
                  disclosure: Disclosure, predict: adi.Predict,
                  session: bytes | str,
                  alpha: float = adi.DEFAULT_ALPHA,
                  eps: float = adi.DEFAULT_EPS, *,
                  published_digest: str | None = None
                  ) -> adi.VerificationResult:
  """PVerify with disclosure in place of zero knowledge (module docstring).

  Args:
    verification_key: the published vk_p.
    disclosure: the prover's :func:`disclose` answer for ``session``.
    predict: the suspect model, images float32 [B, H, W, C] in [0, 1] ->
      scores [B, K].
    session: the verifier's fresh session id.
    alpha: significance level of the binomial test (``accepted_binomial``
      iff p <= alpha).
    eps: the paper's rule (``accepted_threshold`` iff at most eps m of the
      opened triggers disagree).
    published_digest: the hex :meth:`PublicVerificationKey.digest` the
      owner published; pass it, so that no other key is accepted.

  Returns:
    VerificationResult over the m opened triggers.

  Raises:
    adi.DigestMismatchError: before any query, if the key's digest is not
      ``published_digest``.
    ChallengeMismatchError, adi.KeyMismatchError: before any query, if the
      audit or the disclosure does not check out.
  """
  adi.check_published(verification_key, published_digest)
  check_audit(verification_key)
  expected = session_challenge(verification_key, session)
  if not np.array_equal(disclosure.indices, expected):
    raise ChallengeMismatchError(
        f"the disclosure opens candidates {disclosure.indices[:10].tolist()}"
        f"... but the challenge for this session selects "
        f"{expected[:10].tolist()}...; ask the prover to disclose for this "
        "session id.")
  adi.check_openings(disclosure.opened,
                     verification_key.commitments.take(disclosure.indices))
  return adi.decide_agreement(disclosure.opened.triggers, predict,
                              verification_key.num_classes, alpha, eps)
