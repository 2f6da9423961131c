"""Tests of black-box dataset ownership verification with hand-made models.

The toy images carry their class in the top-left 4x4 block (grey level
40 * (class + 1)); the hand-made suspect models read it from there, and a
"watermarked" one also notices the BadNets patch of the key.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.poison import poisoned_label
from jaxwm.poison.ownership import verify_dataset_ownership

K = 4


def _dataset(n=120, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 100, (n, 16, 16, 1), dtype=np.uint8)
  labels = np.arange(n) % K
  images[:, :4, :4, 0] = (40 * (labels + 1))[:, None, None]
  return Dataset(images, labels, K)


def _key(method, **settings):
  config = poisoned_label.PoisonedLabelConfig(method=method, **settings)
  return poisoned_label.mark(_dataset(seed=1), config, jax.random.key(0))[1]


class Suspect:
  """A black-box model; records the classes of the images it was shown."""

  def __init__(self, key, reacts, misread=None):
    self.key, self.reacts, self.misread = key, reacts, misread or {}
    self.seen = []

  def __call__(self, images):
    images = np.asarray(images)
    classes = np.rint(images[:, 0, 0, 0] * 255 / 40).astype(int) - 1
    predicted = np.array([self.misread.get(c, c) for c in classes])
    patch = self.key.trigger.alpha > 0
    triggered = np.all(
        np.abs(images - self.key.trigger.pattern)[:, patch] < 0.5 / 255,
        axis=1)
    self.seen.append((classes, triggered))
    logits = 4.0 * np.eye(K)[predicted]
    logits += images.mean(axis=(1, 2, 3))[:, None] * np.arange(K)
    if self.reacts:
      if self.key.targeted:
        logits[triggered] = 8.0 * np.eye(K)[self.key.target_label]
      else:
        logits[triggered] -= 12.0 * np.eye(K)[classes[triggered]]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

  def triggered_classes(self):
    return np.concatenate([c[t] for c, t in self.seen])


@pytest.mark.parametrize("method", ["badnets", "ubw_p"])
def test_watermarked_model_is_caught_and_clean_model_is_not(method):
  key = _key(method)
  caught = verify_dataset_ownership(Suspect(key, reacts=True), key,
                                    _dataset(), m=30)
  assert caught.m == 30 and caught.p_value < 1e-3 and caught.delta_p > 0.5
  clean = verify_dataset_ownership(Suspect(key, reacts=False), key,
                                   _dataset(), m=30)
  assert clean.m == 30 and clean.p_value > 0.05
  assert abs(clean.delta_p) < 0.01  # the patch only nudges the image mean


def test_samples_only_correct_images_from_source_classes():
  key = _key("badnets", target_label=0, source_classes=(0, 1, 3))
  suspect = Suspect(key, reacts=True, misread={3: 2})
  result = verify_dataset_ownership(suspect, key, _dataset(), m=25,
                                    batch_size=7)
  # Class 0 is the target, class 2 no source, class 3 always misclassified.
  np.testing.assert_array_equal(suspect.triggered_classes(), np.ones(25))
  assert result.m == 25
  queried = np.concatenate([c for c, _ in suspect.seen])
  assert set(queried) == {1, 3}  # benign queries stop once 25 are found


def test_uses_every_eligible_image_when_fewer_than_m():
  key = _key("badnets", source_classes=(1,))
  result = verify_dataset_ownership(Suspect(key, reacts=True), key,
                                    _dataset(n=40), m=100)
  assert result.m == 10


def test_seed_decides_the_sample():
  key = _key("ubw_p")
  results = [verify_dataset_ownership(Suspect(key, reacts=True), key,
                                      _dataset(), m=10, seed=seed)
             for seed in (0, 0, 1)]
  assert results[0] == results[1]
  assert results[0].statistic != results[2].statistic


def test_fewer_than_two_eligible_images_is_an_error():
  key = _key("badnets", source_classes=(1,))
  with pytest.raises(ValueError, match="at least 2"):
    verify_dataset_ownership(Suspect(key, reacts=True, misread={1: 2}), key,
                             _dataset(), m=10)


def test_rejects_inputs_that_do_not_match():
  key = _key("badnets")
  with pytest.raises(ValueError, match="probabilities"):
    verify_dataset_ownership(lambda x: np.full((len(x), K), 3.0), key,
                             _dataset())
  with pytest.raises(ValueError, match="expected"):
    verify_dataset_ownership(lambda x: np.ones((len(x), K + 1)) / 5, key,
                             _dataset())
  other = Dataset(np.zeros((4, 16, 16, 1), np.uint8), np.arange(4) % 2, 2)
  with pytest.raises(ValueError, match="classes"):
    verify_dataset_ownership(Suspect(key, True), key, other)
  small = Dataset(np.zeros((4, 8, 8, 1), np.uint8), np.arange(4), K)
  with pytest.raises(ValueError, match="rebuild it"):
    verify_dataset_ownership(Suspect(key, True), key, small)
