"""Tests of jaxwm.watermark.public: PKeyGen's audit, sessions, PVerify."""

import dataclasses

import numpy as np
import pytest

from jaxwm.watermark import adi
from jaxwm.watermark import public

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def keys():
  return public.public_keygen(8, 2, SHAPE, seed=0, opened_per_session=8)


def test_public_keygen_commits_4n_and_opens_the_challenged_half(keys):
  mk, vk = keys
  assert len(vk.commitments) == len(mk.candidates) == 32
  assert vk.audit.indices.shape == (16,) and len(mk.triggers) == 16
  np.testing.assert_array_equal(
      vk.audit.indices,
      public.keygen_challenge(vk.commitments, 8))
  np.testing.assert_array_equal(mk.audit_indices, vk.audit.indices)
  np.testing.assert_array_equal(
      np.union1d(vk.private_indices, vk.audit.indices), np.arange(32))
  np.testing.assert_array_equal(
      vk.audit.opened.triggers.images,
      mk.candidates.triggers.images[vk.audit.indices])
  np.testing.assert_array_equal(
      mk.triggers.images, mk.candidates.triggers.images[vk.private_indices])
  public.check_audit(vk)


def test_default_opened_per_session_is_half_of_n():
  _, vk = public.public_keygen(6, 3, SHAPE, seed=1)
  assert vk.opened_per_session == 3 and len(vk.commitments) == 24


def test_session_opens_m_private_candidates(keys):
  _, vk = keys
  chosen = public.session_challenge(vk, b"court-session-1")
  assert chosen.shape == (8,)
  assert np.all(np.isin(chosen, vk.private_indices))
  np.testing.assert_array_equal(chosen,
                                public.session_challenge(vk, "court-session-1"))
  with pytest.raises(ValueError, match="non-empty"):
    public.session_challenge(vk, b"")


def test_public_verify_accepts_the_marked_model(keys, lookup_model):
  mk, vk = keys
  disclosure = public.disclose(mk, vk, b"s1")
  # The marked model learned the private half only.
  result = public.public_verify(vk, disclosure, lookup_model(mk.triggers),
                                b"s1")
  # 8 opened triggers, all agree at chance 1/2: p = 2^-8.
  assert result.trials == result.matches == 8
  assert result.p_value == pytest.approx(2.0**-8, rel=1e-12)
  assert result.accepted_binomial and result.accepted_threshold


def test_public_verify_rejects_a_model_at_chance():
  mk, vk = public.public_keygen(40, 10, SHAPE, seed=2)
  disclosure = public.disclose(mk, vk, b"s")
  result = public.public_verify(vk, disclosure,
                                lambda x: np.zeros((len(x), 10)), b"s")
  assert result.trials == 20 and not result.accepted_binomial
  assert not result.accepted_threshold


def test_a_disclosure_for_another_session_is_rejected(keys,
                                                     refuse_queries):
  mk, vk = keys
  disclosure = public.disclose(mk, vk, b"s1")
  with pytest.raises(public.ChallengeMismatchError, match="this session id"):
    public.public_verify(vk, disclosure, refuse_queries, b"s2")


def test_cherry_picked_openings_are_rejected(keys, refuse_queries):
  mk, vk = keys
  honest = public.session_challenge(vk, b"s1")
  # A prover opening other private candidates (validly!) is rejected.
  picked = vk.private_indices[:8]
  assert not np.array_equal(picked, honest)
  cherry = public.Disclosure(picked, mk.candidates.take(picked))
  with pytest.raises(public.ChallengeMismatchError):
    public.public_verify(vk, cherry, refuse_queries, b"s1")


def test_an_audit_opening_another_half_is_rejected(keys, refuse_queries):
  mk, vk = keys
  other = vk.private_indices
  forged = dataclasses.replace(
      vk, audit=public.Disclosure(other, mk.candidates.take(other)))
  with pytest.raises(public.ChallengeMismatchError, match="audit"):
    public.check_audit(forged)
  disclosure = public.disclose(mk, vk, b"s1")
  with pytest.raises(public.ChallengeMismatchError):
    public.public_verify(forged, disclosure, refuse_queries, b"s1")


def test_disclose_refuses_keys_that_do_not_belong_together(keys):
  mk, _ = keys
  _, other_vk = public.public_keygen(8, 2, SHAPE, seed=0, opened_per_session=8)
  with pytest.raises(adi.KeyMismatchError):
    public.disclose(mk, other_vk, b"s1")


def test_public_keys_and_disclosures_round_trip(tmp_path, keys, lookup_model):
  mk, vk = keys
  disclosure = public.disclose(mk, vk, b"s1")
  mk.save(str(tmp_path / "mk"))
  vk.save(str(tmp_path / "vk"))
  disclosure.save(str(tmp_path / "disclosure"))
  mk2 = public.PublicMarkingKey.load(str(tmp_path / "mk"))
  vk2 = public.PublicVerificationKey.load(str(tmp_path / "vk"))
  disclosure2 = public.Disclosure.load(str(tmp_path / "disclosure"))
  assert vk2.key_id == vk.key_id and vk2.opened_per_session == 8
  assert vk2.commitments.digest() == vk.commitments.digest()
  np.testing.assert_array_equal(mk2.audit_indices, mk.audit_indices)
  np.testing.assert_array_equal(disclosure2.indices, disclosure.indices)
  assert vk2.digest() == vk.digest()
  assert public.public_verify(vk2, disclosure2, lookup_model(mk.triggers),
                              b"s1", published_digest=vk.digest()).accepted_binomial
  np.testing.assert_array_equal(
      public.disclose(mk2, vk2, b"s1").indices, disclosure.indices)


def test_invalid_public_keys_are_refused(keys):
  mk, vk = keys
  with pytest.raises(ValueError, match="opened_per_session"):
    dataclasses.replace(vk, opened_per_session=17)
  with pytest.raises(ValueError, match="4n"):
    dataclasses.replace(vk, commitments=vk.commitments.take(np.arange(30)))
  with pytest.raises(ValueError, match="sorted distinct"):
    public.Disclosure(np.array([3, 1]), mk.candidates.take(np.array([3, 1])))
