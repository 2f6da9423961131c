"""Security tests of the model-watermark keys (issue acceptance criteria):
bit flips, swapped labels, Fiat-Shamir binding and uniformity, and loading
keys without executing code from them."""

import dataclasses
import glob
import hashlib
import json
import os
import re

import numpy as np
import pytest
from scipy import stats

from jaxwm import secure_files
from jaxwm.secure_files import TamperedFileError
from jaxwm.watermark import adi
from jaxwm.watermark import commitments
from jaxwm.watermark import public

SHAPE = (16, 16, 1)
FILE_FLIPS = 500
KEY_FLIPS = 300
DISCLOSURE_FLIPS = 200


@pytest.fixture(scope="module")
def private_keys():
  return adi.keygen(100, 10, SHAPE, seed=0)


def _seeded_token_bytes(seed: int):
  """A stand-in for ``secrets.token_bytes`` that repeats across runs."""
  rng = np.random.default_rng(seed)
  return lambda count: rng.bytes(count)


@pytest.fixture(scope="module")
def public_keys():
  # Openings normally come from ``secrets``; seeded here so that the
  # statistical test below sees the same transcripts in every run (with
  # fresh ones it would fail in 1% of runs by design).
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(commitments.secrets, "token_bytes", _seeded_token_bytes(1))
    return public.public_keygen(10, 10, SHAPE, seed=1)


def _flip(array: np.ndarray, bit: int) -> np.ndarray:
  """A copy of ``array`` with one bit of its bytes flipped."""
  data = bytearray(np.ascontiguousarray(array).tobytes())
  data[bit // 8] ^= 1 << (bit % 8)
  return np.frombuffer(bytes(data), array.dtype).reshape(array.shape)


def _flip_random_bit(rng, arrays: dict) -> dict:
  name = list(arrays)[rng.integers(len(arrays))]
  bit = int(rng.integers(arrays[name].nbytes * 8))
  return {**arrays, name: _flip(arrays[name], bit)}


def test_1000_single_bit_flips_are_all_rejected(tmp_path, private_keys,
                                                public_keys, refuse_queries):
  rng = np.random.default_rng(0)
  mk, vk = private_keys
  pmk, pvk = public_keys
  disclosure = public.disclose(pmk, pvk, b"session")

  # 1. Key files: any flip in any of the 15 files fails to load.
  loaders = {
      "mk": (mk, adi.MarkingKey.load),
      "vk": (vk, adi.VerificationKey.load),
      "pmk": (pmk, public.PublicMarkingKey.load),
      "pvk": (pvk, public.PublicVerificationKey.load),
      "disclosure": (disclosure, public.Disclosure.load),
  }
  for name, (key, _) in loaders.items():
    key.save(str(tmp_path / name))
  files = sorted(glob.glob(str(tmp_path / "*")))
  assert len(files) == 15
  for _ in range(FILE_FLIPS):
    path = files[rng.integers(len(files))]
    with open(path, "rb") as f:
      original = f.read()
    bit = int(rng.integers(len(original) * 8))
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with open(path, "wb") as f:
      f.write(flipped)
    load = loaders[os.path.basename(path).split(".")[0]][1]
    with pytest.raises(TamperedFileError):
      load(path.split(".")[0])
    with open(path, "wb") as f:
      f.write(original)

  # 2. Trigger images, labels, openings and commitments of a private key pair:
  #    refused as invalid (a label out of range) or before any query.
  arrays = {**mk.to_arrays(), **vk.to_arrays()}
  verified = 0
  for _ in range(KEY_FLIPS):
    flipped = _flip_random_bit(rng, arrays)
    try:
      bad_mk = adi.MarkingKey.from_arrays(flipped, mk.to_metadata(), "")
    except TamperedFileError:
      assert np.any(flipped["labels"] >= 10) or np.any(flipped["labels"] < 0)
      continue
    bad_vk = adi.VerificationKey.from_arrays(flipped, vk.to_metadata(), "")
    with pytest.raises(adi.KeyMismatchError):
      adi.verify(bad_mk, bad_vk, refuse_queries)
    verified += 1
  assert verified > 0.7 * KEY_FLIPS  # the rest: labels out of range

  # 3. Public verification: flips in the disclosure or the public key.
  arrays = {**disclosure.to_arrays(), **pvk.commitments.to_arrays()}
  verified = 0
  for _ in range(DISCLOSURE_FLIPS):
    flipped = _flip_random_bit(rng, arrays)
    try:
      bad = public.Disclosure.from_arrays(flipped,
                                          pmk.candidates.to_metadata(), "")
    except TamperedFileError:
      continue
    bad_vk = dataclasses.replace(
        pvk, commitments=adi.VerificationKey.from_arrays(
            flipped, pvk.commitments.to_metadata(), ""))
    with pytest.raises(adi.KeyMismatchError):
      public.public_verify(bad_vk, bad, refuse_queries, b"session")
    verified += 1
  assert verified > 0.5 * DISCLOSURE_FLIPS  # the rest: bad indices or labels


def test_swapped_labels_are_rejected(private_keys, refuse_queries):
  mk, vk = private_keys
  labels = mk.triggers.labels
  i, j = 3, int(np.flatnonzero(labels != labels[3])[0])
  swap = np.arange(len(labels))
  swap[[i, j]] = swap[[j, i]]
  swapped = dataclasses.replace(
      mk, triggers=mk.triggers.replace(labels=labels[swap]))
  with pytest.raises(adi.KeyMismatchError,
                     match=re.escape(f"indices {sorted([i, j])}")):
    adi.verify(swapped, vk, refuse_queries)
  # Swapping the label openings along with the labels does not help.
  swapped_both = dataclasses.replace(swapped,
                                     label_openings=mk.label_openings[swap])
  with pytest.raises(adi.KeyMismatchError):
    adi.verify(swapped_both, vk, refuse_queries)


def _with_public_arrays(pvk, arrays):
  commitments = dataclasses.replace(
      pvk.commitments, image_commitments=arrays["image_commitments"],
      label_commitments=arrays["label_commitments"])
  audit = public.Disclosure.from_arrays(arrays, pvk.commitments.to_metadata(),
                                        "", "audit_")
  return dataclasses.replace(pvk, commitments=commitments, audit=audit)


def test_fiat_shamir_challenges_bind_the_whole_transcript():
  # n = 40: a session opens 20 of 80 private candidates, so two different
  # transcripts give the same challenge with probability 1 / C(80, 20)
  # ~ 3e-19. (With n = 10, 5 of 20, that chance is 1 / 15504 per
  # comparison, and the openings are secret random bytes drawn anew in each
  # run: the test would fail about once in 550 runs.)
  _, pvk = public.public_keygen(40, 10, SHAPE, seed=2)
  session = public.session_challenge(pvk, b"session")
  audit = public.keygen_challenge(pvk.commitments, pvk.opened_per_session)
  np.testing.assert_array_equal(session,
                                public.session_challenge(pvk, b"session"))
  np.testing.assert_array_equal(
      audit, public.keygen_challenge(pvk.commitments, pvk.opened_per_session))
  assert not np.array_equal(session, public.session_challenge(pvk, b"sessioN"))
  fewer = dataclasses.replace(pvk, opened_per_session=19)
  assert fewer.key_id != pvk.key_id
  assert not np.array_equal(session,
                            public.session_challenge(fewer, b"session"))
  assert not np.array_equal(
      audit, public.keygen_challenge(pvk.commitments, 19))

  # Every committed value and every value the prover sent is bound: flip one
  # bit in a commitment, an audit image, label or opening.
  rng = np.random.default_rng(1)
  arrays = {**pvk.commitments.to_arrays(), **pvk.audit.opened.to_arrays(
      "audit_"), "audit_indices": pvk.audit.indices}
  for name in ("image_commitments", "label_commitments", "audit_images",
               "audit_image_openings", "audit_label_openings"):
    for _ in range(5):
      bit = int(rng.integers(arrays[name].nbytes * 8))
      changed = _with_public_arrays(
          pvk, {**arrays, name: _flip(arrays[name], bit)})
      assert not np.array_equal(
          session, public.session_challenge(changed, b"session")), name
      if name.endswith("commitments"):
        assert changed.key_id != pvk.key_id, name
        assert not np.array_equal(
            audit, public.keygen_challenge(changed.commitments,
                                           pvk.opened_per_session)), name
  relabelled = arrays["audit_labels"].copy()
  relabelled[0] = (relabelled[0] + 1) % 10
  changed = _with_public_arrays(pvk, {**arrays, "audit_labels": relabelled})
  assert not np.array_equal(session,
                            public.session_challenge(changed, b"session"))


def test_key_id_is_derived_from_the_commitments_and_cannot_be_chosen(
    tmp_path, public_keys):
  """Fiat-Shamir: the keygen challenge depends on nothing the prover may pick
  for free; a chosen key id would make each new challenge cost one hash."""
  pmk, pvk = public_keys
  assert pvk.key_id == public.derive_key_id(pvk.commitments,
                                            pvk.opened_per_session)
  # The same commitments give the same id and audit, whoever computes them.
  again = public.PublicVerificationKey(
      pvk.commitments, pvk.opened_per_session,
      public.Disclosure(pvk.audit.indices, pmk.candidates.take(
          pvk.audit.indices)))
  assert again.key_id == pvk.key_id
  with pytest.raises(TypeError, match="key_id"):
    dataclasses.replace(pvk, key_id=bytes(public.KEY_ID_BYTES))
  # A key file whose id is not the derived one is refused, even with a
  # manifest recomputed by whoever changed it.
  prefix = str(tmp_path / "pvk")
  pvk.save(prefix)
  arrays, metadata = secure_files.load(prefix)
  secure_files.save(prefix, arrays, {**metadata, "key_id": "00" * 16})
  with pytest.raises(TamperedFileError, match=f"key_id {'00' * 16} is not"):
    public.PublicVerificationKey.load(prefix)


def test_challenge_indices_are_uniform_over_sessions(public_keys):
  _, pvk = public_keys
  private = pvk.private_indices
  population, count, sessions = len(private), pvk.opened_per_session, 2000
  counts = np.zeros(population)
  for s in range(sessions):
    chosen = public.session_challenge(pvk, f"session-{s}")
    counts[np.searchsorted(private, chosen)] += 1
  # Draws without replacement (test_transcript.py explains the rescaling).
  expected = sessions * count / population
  statistic = (np.sum((counts - expected)**2 / expected) /
               (1 - count / population) * (population - 1) / population)
  assert stats.chi2.sf(statistic, population - 1) > 0.01


class _Payload:
  """Unpickling this calls open(path, "w"): the file appears if code runs."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, "w"))


def _write_malicious_key(prefix, marker, metadata):
  """A key whose npz holds a pickled object array and whose manifest matches.

  This is what a forger who also rewrites the manifest can hand over.
  """
  payload = np.empty(1, dtype=object)
  payload[0] = _Payload(marker)
  np.savez(prefix + ".npz", images=payload, image_commitments=payload)
  with open(prefix + ".json", "w") as f:
    json.dump(metadata, f)
  digests = {}
  for suffix in (".npz", ".json"):
    with open(prefix + suffix, "rb") as f:
      digests[os.path.basename(prefix) + suffix] = hashlib.sha256(
          f.read()).hexdigest()
  with open(prefix + ".manifest.json", "w") as f:
    json.dump({"format": secure_files.FORMAT, "sha256": digests}, f,
              sort_keys=True, indent=1)


@pytest.mark.parametrize("load, kind", [
    (adi.MarkingKey.load, adi.MARKING_KEY_KIND),
    (adi.VerificationKey.load, adi.VERIFICATION_KEY_KIND),
    (public.PublicMarkingKey.load, public.PUBLIC_MARKING_KEY_KIND),
    (public.PublicVerificationKey.load, public.PUBLIC_VERIFICATION_KEY_KIND),
    (public.Disclosure.load, public.DISCLOSURE_KIND),
])
def test_loading_a_key_never_executes_code_from_it(tmp_path, load, kind):
  marker = str(tmp_path / "code_ran")
  prefix = str(tmp_path / "key")
  _write_malicious_key(prefix, marker,
                       {"kind": kind, "num_classes": 10,
                        "image_shape": list(SHAPE)})
  with pytest.raises(TamperedFileError, match="pickle"):
    load(prefix)
  assert not os.path.exists(marker)
  # The payload is live: loading with pickle allowed would run it.
  with np.load(prefix + ".npz", allow_pickle=True) as npz:
    npz["images"]
  assert os.path.exists(marker)
