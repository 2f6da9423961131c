"""Tests of the poisoned-label watermarks BadNets, Blended, WaNet and UBW-P."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest
from scipy import stats

from jaxwm.data.dataset import Dataset
from jaxwm.poison import poisoned_label
from jaxwm.poison import triggers
from jaxwm.poison.poisoned_label import PoisonedLabelConfig


def _dataset(n=200, num_classes=4, shape=(16, 16, 3)):
  rng = np.random.default_rng(1)
  return Dataset(rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
                 np.arange(n) % num_classes, num_classes, name="toy")


def _mark(method, dataset=None, seed=0, **settings):
  dataset = dataset or _dataset()
  config = PoisonedLabelConfig(method=method, **settings)
  return poisoned_label.mark(dataset, config, jax.random.key(seed))


def _assert_rest_unchanged(dataset, marked, modified):
  rest = np.setdiff1d(np.arange(len(dataset)), modified)
  np.testing.assert_array_equal(marked.images[rest], dataset.images[rest])
  np.testing.assert_array_equal(marked.labels[rest], dataset.labels[rest])


@pytest.mark.parametrize("method", ["badnets", "blended"])
def test_targeted_watermark_relabels_triggered_samples(method):
  dataset = _dataset()
  marked, key = _mark(method, dataset)
  poisoned = key.poisoned_indices
  assert poisoned.size == 20 and np.unique(poisoned).size == 20
  np.testing.assert_array_equal(marked.labels[poisoned], 0)
  np.testing.assert_array_equal(
      marked.images[poisoned], key.apply_trigger_uint8(
          dataset.images[poisoned]))
  assert not np.array_equal(marked.images[poisoned], dataset.images[poisoned])
  _assert_rest_unchanged(dataset, marked, poisoned)
  assert (key.method, key.target_label, key.poison_rate) == (method, 0, 0.1)
  assert key.source_classes == (0, 1, 2, 3) and key.noise_indices.size == 0
  np.testing.assert_array_equal(
      key.seed, jax.random.key_data(jax.random.key(0)))
  assert marked.name == "toy" and marked.num_classes == 4


def test_badnets_stores_the_patch_and_blended_a_light_blend():
  dataset = _dataset()
  marked, key = _mark("badnets", dataset)
  images = marked.images[key.poisoned_indices]
  np.testing.assert_array_equal(images[:, -2:, -2:, 0],
                                np.broadcast_to([[255, 0], [0, 255]],
                                                (20, 2, 2)))
  marked, key = _mark("blended", dataset)
  change = np.abs(marked.images[key.poisoned_indices].astype(int) -
                  dataset.images[key.poisoned_indices])
  assert change.max() <= 26 and change.mean() > 3  # alpha = 0.1 of 0..255


def test_marking_is_decided_by_the_key_alone():
  first, key_a = _mark("blended", seed=3)
  second, key_b = _mark("blended", seed=3)
  np.testing.assert_array_equal(first.images, second.images)
  np.testing.assert_array_equal(key_a.poisoned_indices, key_b.poisoned_indices)
  _, key_c = _mark("blended", seed=4)
  assert not np.array_equal(key_a.poisoned_indices, key_c.poisoned_indices)
  assert not np.array_equal(key_a.trigger.pattern, key_c.trigger.pattern)


def test_ubw_p_draws_poisoned_labels_uniformly():
  dataset = _dataset(n=2000, shape=(8, 8, 1))
  marked, key = _mark("ubw_p", dataset, poison_rate=0.5)
  assert key.target_label is None and not key.targeted
  assert isinstance(key.trigger, triggers.BlendTrigger)
  assert key.trigger.name == "badnets"
  counts = np.bincount(marked.labels[key.poisoned_indices], minlength=4)
  assert stats.chisquare(counts).pvalue > 1e-3
  kept = np.mean(marked.labels[key.poisoned_indices] ==
                 dataset.labels[key.poisoned_indices])
  assert 0.18 < kept < 0.32  # 1/K of random labels equal the true one
  _assert_rest_unchanged(dataset, marked, key.poisoned_indices)


def test_wanet_noise_mode_warps_extra_samples_that_keep_their_labels():
  dataset = _dataset()
  marked, key = _mark("wanet", dataset)
  assert isinstance(key.trigger, triggers.WarpTrigger)
  noise, poisoned = key.noise_indices, key.poisoned_indices
  assert noise.size == 40 and not np.intersect1d(noise, poisoned).size
  np.testing.assert_array_equal(marked.labels[noise], dataset.labels[noise])
  np.testing.assert_array_equal(marked.labels[poisoned], 0)
  np.testing.assert_array_equal(marked.images[poisoned],
                                key.apply_trigger_uint8(
                                    dataset.images[poisoned]))
  exact = key.apply_trigger_uint8(dataset.images[noise])
  assert not np.array_equal(marked.images[noise], exact)
  assert not np.array_equal(marked.images[noise], dataset.images[noise])
  _assert_rest_unchanged(dataset, marked, np.union1d(noise, poisoned))
  _, quiet = _mark("wanet", dataset, wanet_noise=False)
  assert quiet.noise_indices.size == 0


def test_ubw_p_can_use_the_wanet_trigger():
  _, key = _mark("ubw_p", trigger="wanet", wanet_k=8)
  assert key.trigger.params["k"] == 8 and key.noise_indices.size == 40


def test_source_classes_restrict_the_poisoned_samples():
  dataset = _dataset()
  _, key = _mark("badnets", dataset, source_classes=(1, 2), target_label=3)
  assert set(dataset.labels[key.poisoned_indices]) <= {1, 2}
  assert key.source_classes == (1, 2) and key.target_label == 3


def test_config_dict_gives_the_same_watermark_as_the_dataclass():
  dataset = _dataset()
  settings = dict(method="badnets", poison_rate=0.05, target_label=2,
                  patch_position=(0, 0))
  from_dict = poisoned_label.mark(
      dataset, ml_collections.ConfigDict(settings), jax.random.key(0))
  from_dataclass = _mark(dataset=dataset, **settings)
  np.testing.assert_array_equal(from_dict[0].images, from_dataclass[0].images)
  np.testing.assert_array_equal(from_dict[0].labels, from_dataclass[0].labels)
  assert from_dict[1].trigger.params["position"] == [0, 0]


@pytest.mark.parametrize("settings,message", [
    ({"method": "label_consistent"}, "unknown poisoned-label method"),
    ({"poison_rate": 0.0}, "poison_rate"),
    ({"poison_rate": 1.0}, "poison_rate"),
    ({"method": "badnets", "trigger": "wanet"}, "does not fit"),
    ({"wanet_noise_ratio": -1.0}, "wanet_noise_ratio")])
def test_config_rejects_bad_settings(settings, message):
  with pytest.raises(ValueError, match=message):
    PoisonedLabelConfig(**settings)


def test_mark_rejects_settings_that_do_not_fit_the_dataset():
  with pytest.raises(ValueError, match="unknown watermark config fields"):
    poisoned_label.mark(_dataset(), {"method": "badnets", "rate": 0.1},
                        jax.random.key(0))
  with pytest.raises(ValueError, match="target_label 7"):
    _mark("badnets", target_label=7)
  with pytest.raises(ValueError, match="source_classes"):
    _mark("badnets", source_classes=(9,))
  with pytest.raises(ValueError, match="cannot choose 100"):
    _mark("badnets", source_classes=(1,), poison_rate=0.5)
  with pytest.raises(ValueError, match="rounds to no poisoned sample"):
    _mark("badnets", poison_rate=0.001)
