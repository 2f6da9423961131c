"""The key-free ownership test: candidates, a marking function, a suspect.

The toy images carry their class in the top-left pixel (grey level
40 * (class + 1)); the mark sets the bottom-right pixel to 255, and the
hand-made suspects read both.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.verify import TooFewCorrectError, verify_ownership

K = 4


def _dataset(n=80):
  images = np.zeros((n, 8, 8, 1), np.uint8)
  labels = np.arange(n) % K
  images[:, 0, 0, 0] = 40 * (labels + 1)
  return Dataset(images, labels, K)


def _mark(images):
  marked = images.copy()
  marked[:, -1, -1, 0] = 255
  return marked


def _suspect(target=None):
  """Reads the class; a marked image goes to ``target`` (None: ignored)."""

  def predict_proba(images):
    classes = np.rint(images[:, 0, 0, 0] * 255 / 40).astype(int) - 1
    marked = images[:, -1, -1, 0] > 0.5
    if target is not None:
      classes = np.where(marked, target, classes)
    probabilities = np.full((len(images), K), 0.1 / (K - 1))
    probabilities[np.arange(len(images)), classes] = 0.9
    return probabilities

  return predict_proba


def test_targeted_rise_is_detected_and_absent_rise_is_not():
  data = _dataset()
  candidates = np.flatnonzero(data.labels != 0)
  caught = verify_ownership(_suspect(target=0), data, candidates, _mark,
                            target_label=0, m=20)
  assert caught.m == 20 and caught.p_value < 1e-3
  assert caught.delta_p == pytest.approx(0.9 - 0.1 / 3)
  innocent = verify_ownership(_suspect(), data, candidates, _mark,
                              target_label=0, m=20)
  assert innocent.p_value > 0.5 and innocent.delta_p == pytest.approx(0.0)


def test_untargeted_test_reads_the_true_label():
  data = _dataset()
  result = verify_ownership(_suspect(target=3), data,
                            np.flatnonzero(data.labels < 3), _mark, m=15)
  # The true label's probability falls from 0.9 to 0.1/3 on every image.
  assert result.delta_p == pytest.approx(0.9 - 0.1 / 3)
  assert result.p_value < 1e-3


def test_too_few_correct_names_the_candidates():
  data = _dataset()
  wrong = lambda images: _suspect(target=1)(_mark(
      (images * 255).astype(np.uint8)) / 255)
  with pytest.raises(TooFewCorrectError, match="only 0 of the 20 my images"):
    verify_ownership(wrong, data, np.flatnonzero(data.labels == 0), _mark,
                     candidates_name="my images")


def test_rejects_a_target_outside_the_classes():
  data = _dataset()
  with pytest.raises(ValueError, match="target_label=4"):
    verify_ownership(_suspect(), data, np.arange(10), _mark, target_label=4)
