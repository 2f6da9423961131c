"""Tests of jaxwm.watermark.adi: KeyGen, Verify and Mark's data helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.secure_files import TamperedFileError
from jaxwm.watermark import adi

SHAPE = (12, 12, 1)


@pytest.fixture(scope="module")
def keys():
  return adi.keygen(10, 2, SHAPE, seed=0)


def test_keygen_commits_to_every_image_and_label(keys):
  mk, vk = keys
  assert len(mk) == len(vk) == 10
  assert mk.triggers.image_shape == vk.image_shape == SHAPE
  assert mk.triggers.num_classes == vk.num_classes == 2
  assert vk.image_commitments.shape == vk.label_commitments.shape == (10, 32)
  recomputed = adi.commit_to(mk)
  np.testing.assert_array_equal(recomputed.image_commitments,
                                vk.image_commitments)
  np.testing.assert_array_equal(recomputed.label_commitments,
                                vk.label_commitments)
  openings = np.concatenate([mk.image_openings, mk.label_openings])
  assert len({row.tobytes() for row in openings}) == 20


def test_seed_fixes_the_trigger_set_but_openings_stay_secret():
  a, va = adi.keygen(4, 3, SHAPE, seed=7)
  b, vb = adi.keygen(4, 3, SHAPE, seed=7)
  np.testing.assert_array_equal(a.triggers.images, b.triggers.images)
  np.testing.assert_array_equal(a.triggers.labels, b.triggers.labels)
  assert not np.array_equal(a.image_openings, b.image_openings)
  assert va.digest() != vb.digest()


def test_verify_accepts_the_marked_model_hand_worked(keys, lookup_model):
  mk, vk = keys
  result = adi.verify(mk, vk, lookup_model(mk.triggers))
  # All 10 labels agree at chance 1/2: p = 2^-10.
  assert result.matches == result.trials == 10 and result.agreement == 1.0
  assert result.p_value == pytest.approx(2.0**-10, rel=1e-12)
  assert result.chance == 0.5
  assert result.accepted_binomial and result.accepted_threshold


def test_verify_partial_agreement_hand_worked(keys, lookup_model):
  mk, vk = keys
  labels = mk.triggers.labels.copy()
  labels[:2] = 1 - labels[:2]
  result = adi.verify(mk, vk, lookup_model(mk.triggers, labels), alpha=0.05)
  # P[X >= 8], X ~ Bin(10, 1/2) = (45 + 10 + 1) / 1024.
  assert result.matches == 8
  assert result.p_value == pytest.approx(56 / 1024, rel=1e-12)
  assert not result.accepted_binomial
  assert adi.verify(mk, vk, lookup_model(mk.triggers, labels),
                    alpha=0.06).accepted_binomial
  # The paper's rule: 2 of 10 disagree, within eps |T| = 2 at eps = 0.2,
  # beyond eps |T| = 1.9 at eps = 0.19.
  for eps, accepted in ((0.1, False), (0.19, False), (0.2, True)):
    result = adi.verify(mk, vk, lookup_model(mk.triggers, labels), eps=eps)
    assert result.eps == eps and result.accepted_threshold == accepted


def test_the_two_rules_disagree_between_19_and_89_of_100(lookup_model):
  """K = 10, n = 100: the binomial test at alpha = 0.01 accepts from 19
  agreements, the paper's rule at eps = 0.1 from 90."""
  mk, vk = adi.keygen(100, 10, SHAPE, seed=3)
  labels = mk.triggers.labels
  for matches, binomial, threshold in ((18, False, False), (19, True, False),
                                       (89, True, False), (90, True, True)):
    # The first ``matches`` triggers answered right, the rest wrong.
    answers = np.where(np.arange(100) < matches, labels, (labels + 1) % 10)
    result = adi.verify(mk, vk, lookup_model(mk.triggers, answers))
    assert result.matches == matches
    assert (result.alpha, result.eps) == (adi.DEFAULT_ALPHA, adi.DEFAULT_EPS)
    assert result.accepted_binomial == binomial
    assert result.accepted_threshold == threshold


@pytest.mark.parametrize("trials, eps, tolerated", [
    (100, 0.1, 10), (100, 0.29, 29), (100, 0.0, 0), (30, 0.1, 3),
    (7, 0.49, 3)])
def test_max_disagreements_is_floor_of_eps_times_trials(trials, eps,
                                                        tolerated):
  assert adi.max_disagreements(trials, eps) == tolerated


def test_verify_rejects_a_model_at_chance():
  mk, vk = adi.keygen(100, 10, SHAPE, seed=1)
  result = adi.verify(mk, vk, lambda x: np.zeros((len(x), 10)))
  assert result.matches == int(np.sum(mk.triggers.labels == 0))
  assert result.p_value > 0.01 and not result.accepted_binomial
  assert not result.accepted_threshold


def test_mismatched_keys_are_rejected_before_any_query(keys, refuse_queries):
  mk, _ = keys
  _, other_vk = adi.keygen(10, 2, SHAPE, seed=0)
  with pytest.raises(adi.KeyMismatchError, match="do not open"):
    adi.verify(mk, other_vk, refuse_queries)
  _, small_vk = adi.keygen(5, 2, SHAPE, seed=0)
  with pytest.raises(adi.KeyMismatchError, match="pass the pair"):
    adi.verify(mk, small_vk, refuse_queries)


def test_verify_checks_the_model_output(keys, lookup_model):
  mk, vk = keys
  with pytest.raises(ValueError, match=r"\[10, 2\]"):
    adi.verify(mk, vk, lambda x: np.zeros((len(x), 3)))
  with pytest.raises(ValueError, match="non-finite"):
    adi.verify(mk, vk, lambda x: np.full((len(x), 2), np.nan))
  with pytest.raises(ValueError, match="alpha"):
    adi.verify(mk, vk, lookup_model(mk.triggers), alpha=0.0)
  for eps in (-0.1, 0.5):
    with pytest.raises(ValueError, match=r"eps=.*in \[0, 0.5\)"):
      adi.verify(mk, vk, lookup_model(mk.triggers), eps=eps)


def test_keys_round_trip_through_secure_files(tmp_path, keys, lookup_model):
  mk, vk = keys
  mk_digest = mk.save(str(tmp_path / "mk"))
  vk.save(str(tmp_path / "vk"))
  mk2 = adi.MarkingKey.load(str(tmp_path / "mk"), digest=mk_digest)
  vk2 = adi.VerificationKey.load(str(tmp_path / "vk"))
  np.testing.assert_array_equal(mk2.triggers.images, mk.triggers.images)
  np.testing.assert_array_equal(mk2.label_openings, mk.label_openings)
  assert vk2.digest() == vk.digest()
  assert adi.verify(mk2, vk2, lookup_model(mk.triggers),
                    published_digest=vk.digest()).accepted_binomial
  with pytest.raises(TamperedFileError, match="not a 'jaxwm/adi/marking"):
    adi.MarkingKey.load(str(tmp_path / "vk"))


def test_keygen_with_a_given_trigger_set(keys, lookup_model):
  mk, _ = keys
  mk2, vk2 = adi.keygen(10, 2, SHAPE, trigger_set=mk.triggers)
  np.testing.assert_array_equal(mk2.triggers.images, mk.triggers.images)
  assert adi.verify(mk2, vk2, lookup_model(mk.triggers)).accepted_binomial
  with pytest.raises(ValueError, match="keygen was asked"):
    adi.keygen(11, 2, SHAPE, trigger_set=mk.triggers)


def test_trigger_arrays_are_the_stored_images_and_labels(keys):
  mk, _ = keys
  images, labels = adi.trigger_arrays(mk)
  assert images.dtype == jnp.uint8 and labels.dtype == jnp.int32
  np.testing.assert_array_equal(images, mk.triggers.images)
  np.testing.assert_array_equal(labels, mk.triggers.labels)


def test_batch_with_triggers_overwrites_the_last_k_rows(keys):
  mk, _ = keys
  trigger_images, trigger_labels = adi.trigger_arrays(mk)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (6,) + SHAPE, dtype=np.uint8))
  labels = jnp.arange(6, dtype=jnp.int32) + 20
  mix = jax.jit(adi.batch_with_triggers, static_argnames="k")
  seen = set()
  for i in range(30):
    out_images, out_labels = mix(images, labels, trigger_images,
                                 trigger_labels, jax.random.key(i))
    assert out_images.shape == (6,) + SHAPE and out_labels.shape == (6,)
    assert out_images.dtype == jnp.uint8 and out_labels.dtype == jnp.int32
    np.testing.assert_array_equal(out_images[:4], images[:4])
    np.testing.assert_array_equal(out_labels[:4], labels[:4])
    chosen = [int(np.flatnonzero((np.asarray(trigger_images) == image).all(
        axis=(1, 2, 3)))[0]) for image in np.asarray(out_images[4:])]
    assert chosen[0] != chosen[1]
    np.testing.assert_array_equal(out_labels[4:],
                                  np.asarray(trigger_labels)[chosen])
    seen.update(chosen)
  assert seen == set(range(10))


def test_batch_with_triggers_bad_arguments(keys):
  mk, _ = keys
  trigger_images, trigger_labels = adi.trigger_arrays(mk)
  images = jnp.zeros((4,) + SHAPE, jnp.uint8)
  labels = jnp.zeros((4,), jnp.int32)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"k must be in \[1, min\(n, B - 1\)\] = "
                     r"\[1, 3\]"):
    adi.batch_with_triggers(images, labels, trigger_images, trigger_labels,
                            key, k=4)
  big = jnp.zeros((16,) + SHAPE, jnp.uint8)
  with pytest.raises(ValueError, match=r"\[1, 10\]"):
    adi.batch_with_triggers(big, jnp.zeros((16,), jnp.int32), trigger_images,
                            trigger_labels, key, k=11)
  with pytest.raises(TypeError, match="float32"):
    adi.batch_with_triggers(images.astype(jnp.float32), labels,
                            trigger_images, trigger_labels, key)
  with pytest.raises(ValueError, match="image shape"):
    adi.batch_with_triggers(jnp.zeros((4, 4, 4, 1), jnp.uint8), labels,
                            trigger_images, trigger_labels, key)
