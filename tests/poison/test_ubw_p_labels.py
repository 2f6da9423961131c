"""Tests of how UBW-P draws the random labels of its poisoned samples."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

from jaxwm.data.dataset import Dataset
from jaxwm.poison import poisoned_label


def test_balanced_draw_spreads_each_true_class_evenly():
  true = np.repeat([0, 1, 2], [23, 20, 7])
  labels = poisoned_label.random_labels(jax.random.key(0), true, 5,
                                        "balanced")
  assert labels.dtype == np.int32 and labels.shape == (50,)
  for cls, size in ((0, 23), (1, 20), (2, 7)):
    counts = np.bincount(labels[true == cls], minlength=5)
    # 23 = 4 * 5 + 3: three classes get 5, two get 4; 20: all get 4;
    # 7: two classes get 2, three get 1.
    assert counts.sum() == size and counts.max() - counts.min() <= 1
    assert counts.min() == size // 5


def test_balanced_draw_is_uniform_for_each_sample_and_keyed():
  true = np.repeat(np.arange(3), 7)
  draws = np.stack([
      poisoned_label.random_labels(jax.random.key(seed), true, 5, "balanced")
      for seed in range(400)])
  # Sample 0's label over 400 keys: uniform on the 5 classes, also for the
  # remainder classes of a group of 7.
  for sample in (0, 6, 20):
    counts = np.bincount(draws[:, sample], minlength=5)
    assert stats.chisquare(counts).pvalue > 1e-3
  np.testing.assert_array_equal(
      draws[3], poisoned_label.random_labels(jax.random.key(3), true, 5,
                                             "balanced"))
  assert not np.array_equal(draws[3], draws[4])


def test_independent_draw_is_the_plain_uniform_draw():
  true = np.zeros(30, int)
  labels = poisoned_label.random_labels(jax.random.key(2), true, 10)
  np.testing.assert_array_equal(
      labels, jax.random.randint(jax.random.key(2), (30,), 0, 10))
  with pytest.raises(ValueError, match="unknown label draw 'sorted'"):
    poisoned_label.random_labels(jax.random.key(2), true, 10, "sorted")


def test_ubw_p_mark_uses_the_configured_draw():
  rng = np.random.default_rng(0)
  dataset = Dataset(rng.integers(0, 256, (400, 8, 8, 1), dtype=np.uint8),
                    np.arange(400) % 4, 4)
  marked, key = poisoned_label.mark(
      dataset, {"method": "ubw_p", "poison_rate": 0.25,
                "label_draw": "balanced"}, jax.random.key(1))
  poisoned = key.poisoned_indices
  for cls in range(4):
    group = poisoned[dataset.labels[poisoned] == cls]
    counts = np.bincount(marked.labels[group], minlength=4)
    assert counts.max() - counts.min() <= 1
  with pytest.raises(ValueError, match="unknown label_draw"):
    poisoned_label.PoisonedLabelConfig(method="ubw_p", label_draw="fixed")
