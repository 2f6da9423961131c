"""UBW-C and Sleeper Agent: which samples move, by how much, and the key."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import alignment
from jaxwm.alignment.crafting import CraftConfig
from jaxwm.data.augment import AugmentConfig
from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model
from jaxwm.poison import alignment_watermark, sleeper_agent, triggers, ubw_c
from jaxwm.poison.alignment_watermark import AlignmentWatermarkConfig
from jaxwm.train import make_mesh

ONE_DEVICE = make_mesh(jax.devices()[:1])
CRAFT = CraftConfig(epsilon=8 / 255, steps=2, restarts=1, batch_size=16,
                    augment=AugmentConfig(), retrain_every=1)


@functools.lru_cache(maxsize=None)
def _setup():
  model = get_model("cnn", 4, width=4, dense_width=16)
  variables = dict(jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False))
  rng = np.random.default_rng(2)
  data = Dataset(rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
                 np.arange(40) % 4, 4)
  return model, variables, data


def _mark(module, **config):
  model, variables, data = _setup()
  retrained = []

  def retrain(dataset, tag):
    retrained.append((tag, dataset))
    return variables

  marked, key, objective = alignment_watermark.mark(
      data, module.METHOD, AlignmentWatermarkConfig(poison_rate=0.2, **config), CRAFT,
      jax.random.PRNGKey(3), model=model, variables=variables,
      retrain_surrogate=retrain, mesh=ONE_DEVICE)
  return data, marked, key, objective, retrained


def _check_release(data, marked, key, retrained):
  moved = np.any(marked.images != data.images, axis=(1, 2, 3))
  # Only the recorded samples move, each by at most 8 levels, labels kept.
  assert set(np.flatnonzero(moved)) <= set(key.poisoned_indices)
  assert np.abs(marked.images.astype(int) - data.images.astype(int)).max() <= 8
  np.testing.assert_array_equal(marked.labels, data.labels)
  assert key.source_classes == (0,)
  # One bi-level round: the surrogate was retrained once, on a set where
  # only the selected samples differ from the clean one.
  assert [tag for tag, _ in retrained] == ["surrogate_trial0_round1"]
  changed = np.any(retrained[0][1].images != data.images, axis=(1, 2, 3))
  assert set(np.flatnonzero(changed)) <= set(key.poisoned_indices)


def test_ubw_c_perturbs_the_largest_gradient_norms_untargeted():
  data, marked, key, objective, retrained = _mark(ubw_c)
  model, variables, _ = _setup()
  _check_release(data, marked, key, retrained)
  assert key.method == "ubw_c" and key.target_label is None
  assert key.poisoned_indices.size == 8 and key.poison_rate == 0.2
  norms = alignment.per_example_gradient_norms(
      model, variables, data.images, data.labels, batch_size=8,
      mesh=ONE_DEVICE)
  np.testing.assert_array_equal(key.poisoned_indices,
                                np.sort(np.argsort(-norms)[:8]))
  assert 0.0 <= objective <= 2.0
  # The inference trigger is the visible patch, not the perturbation.
  assert key.trigger.name == "badnets"


def test_sleeper_agent_perturbs_only_the_target_class():
  data, marked, key, _, retrained = _mark(sleeper_agent, target_label=1)
  _check_release(data, marked, key, retrained)
  assert key.method == "sleeper_agent" and key.target_label == 1
  assert np.all(data.labels[key.poisoned_indices] == 1)
  assert key.poisoned_indices.size == 8
  with pytest.raises(ValueError, match="equals the source class"):
    _mark(sleeper_agent, target_label=0)


def test_random_craft_positions_move_the_patch_per_target_image():
  _, _, data = _setup()
  trigger = alignment_watermark.inference_trigger(
      AlignmentWatermarkConfig(patch_size=3), data.image_shape)
  fixed = alignment_watermark.triggered_target_images(
      AlignmentWatermarkConfig(patch_size=3), trigger, data.images,
      jax.random.PRNGKey(0))
  np.testing.assert_array_equal(
      fixed, triggers.apply_uint8(trigger, data.images))
  config = AlignmentWatermarkConfig(patch_size=3,
                                    craft_patch_positions="random")
  moved = alignment_watermark.triggered_target_images(
      config, trigger, data.images, jax.random.PRNGKey(0))
  # Every image carries the 3x3 patch somewhere: it differs from its
  # original only inside one 3x3 window (at most), at many places overall.
  changed = moved != data.images
  rows = [np.flatnonzero(c.any(axis=(1, 2))) for c in changed]
  assert all(r.size == 0 or r.max() - r.min() < 3 for r in rows)
  assert len({(r.min() if r.size else -1) for r in rows}) > 3
  np.testing.assert_array_equal(
      moved, alignment_watermark.triggered_target_images(
          config, trigger, data.images, jax.random.PRNGKey(0)))
  with pytest.raises(ValueError, match="craft_patch_positions"):
    AlignmentWatermarkConfig(craft_patch_positions="corner")
  # The whole recipe runs with it; the release obeys the same rules.
  data, marked, key, _, retrained = _mark(
      sleeper_agent, target_label=1, patch_size=3,
      craft_patch_positions="random")
  _check_release(data, marked, key, retrained)
