"""Availability poisons: random noise, crafted poisons, and the owner's key."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import alignment
from jaxwm import secure_files
from jaxwm.data.augment import AugmentConfig
from jaxwm.data.dataset import Dataset
from jaxwm.models import get_model
from jaxwm.poison import availability
from jaxwm.train import make_mesh

ONE_DEVICE = make_mesh(jax.devices()[:1])


def _dataset(n=32):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
  images[:, 0, 0] = 0
  images[:, 0, 1] = 255
  return Dataset(images, np.arange(n) % 4, 4)


def test_random_noise_moves_every_pixel_by_eps_unless_clipped():
  data = _dataset()
  released, key = availability.poison(
      data, "random_noise", alignment.CraftConfig(epsilon=8 / 255),
      jax.random.PRNGKey(0))
  moved = released.images.astype(int) - data.images.astype(int)
  inside = (data.images >= 8) & (data.images <= 247)
  assert set(np.unique(moved[inside])) == {-8, 8}
  # Both signs about equally often (2048 pixels).
  assert 0.45 < np.mean(moved[inside] > 0) < 0.55
  # Saturated pixels can only move inwards.
  assert set(np.unique(moved[:, 0, 0])) <= {0, 8}
  assert set(np.unique(moved[:, 0, 1])) <= {-8, 0}
  np.testing.assert_array_equal(key.perturbation, moved)
  np.testing.assert_array_equal(key.poisoned_indices, np.arange(len(data)))
  assert math.isnan(key.objective)
  np.testing.assert_array_equal(released.labels, data.labels)
  np.testing.assert_array_equal(key.restore(released).images, data.images)
  # Pixels at 0 that moved up cannot be restored from the clean set.
  with pytest.raises(ValueError, match="not the released"):
    key.restore(data)
  with pytest.raises(ValueError, match="not the one this key"):
    key.restore(data.take(np.arange(8)))


def test_crafted_poisons_stay_within_eps_and_the_key_restores_the_data(
    tmp_path):
  data = _dataset()
  model = get_model("cnn", 4, width=4, dense_width=16)
  variables = dict(jax.jit(model.init, static_argnames="train")(
      jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False))
  config = alignment.CraftConfig(epsilon=8 / 255, steps=2, restarts=1,
                                batch_size=16, augment=AugmentConfig())
  for method in ("availability", "tensorclog"):
    released, key = availability.poison(
        data, method, config, jax.random.PRNGKey(1), model=model,
        variables=variables, target_fraction=0.5, mesh=ONE_DEVICE)
    moved = released.images.astype(int) - data.images.astype(int)
    assert np.abs(moved).max() == 8
    assert key.method == method and key.epsilon == pytest.approx(8 / 255)
    assert np.isfinite(key.objective)
    restored = key.restore(released)
    np.testing.assert_array_equal(restored.images, data.images)
  prefix = os.path.join(tmp_path, "poison_key")
  digest = key.save(prefix)
  loaded = availability.AvailabilityKey.load(prefix, digest)
  np.testing.assert_array_equal(loaded.perturbation, key.perturbation)
  assert loaded.objective == pytest.approx(key.objective)
  with open(prefix + ".npz", "r+b") as f:
    f.seek(-5, os.SEEK_END)
    f.write(b"XXXXX")
  with pytest.raises(secure_files.TamperedFileError):
    availability.AvailabilityKey.load(prefix)


def test_bad_inputs_name_the_fix():
  data = _dataset()
  config = alignment.CraftConfig(epsilon=8 / 255)
  with pytest.raises(ValueError, match="unknown"):
    availability.poison(data, "fowl", config, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="surrogate"):
    availability.poison(data, "availability", config, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="exceeds epsilon"):
    availability.AvailabilityKey(
        method="random_noise", epsilon=2 / 255, poisoned_indices=[0],
        num_samples=1, perturbation=np.full((1, 2, 2, 1), 3),
        seed=np.zeros(2, np.uint32))


def test_bilevel_rounds_retrain_on_the_current_poison():
  data = _dataset()
  model = get_model("cnn", 4, width=4, dense_width=16)
  init = jax.jit(model.init, static_argnames="train")
  variables = dict(init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)),
                        train=False))
  retrained = dict(init(jax.random.PRNGKey(5), jnp.zeros((1, 8, 8, 1)),
                        train=False))
  seen = []

  def retrain_surrogate(poisoned, tag):
    seen.append((tag, poisoned))
    return retrained

  def released_with(retrain_every, retrain_surrogate=None):
    config = alignment.CraftConfig(epsilon=8 / 255, steps=3, restarts=1,
                                  batch_size=16, augment=AugmentConfig(),
                                  retrain_every=retrain_every)
    return availability.poison(
        data, "availability", config, jax.random.PRNGKey(1), model=model,
        variables=variables, mesh=ONE_DEVICE,
        retrain_surrogate=retrain_surrogate)

  released, key = released_with(2, retrain_surrogate)
  # One round, after step 2: the retrained surrogate sees the poison so far,
  # all of it within eps of the clean set and with the clean labels.
  assert [tag for tag, _ in seen] == ["surrogate_trial0_round1"]
  poisoned = seen[0][1]
  np.testing.assert_array_equal(poisoned.labels, data.labels)
  moved = poisoned.images.astype(int) - data.images.astype(int)
  assert 0 < np.abs(moved).max() <= 8
  assert np.isfinite(key.objective)
  # Step 3 aligned against the retrained surrogate: the poison differs from
  # the one crafted against the first surrogate throughout.
  without, _ = released_with(0)
  assert np.any(released.images != without.images)
  with pytest.raises(ValueError, match="retrain function"):
    released_with(2)
