"""DP-SGD: per-example clipping and noise, consistent with the engine."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from jaxwm import defenses, train
from jaxwm.models import get_model


class _Small(nn.Module):
  """A convolution and a head, no BatchNorm: per-example and batch
  gradients then agree, and the convolution exercises per-example weight
  gradients on a split batch."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    return nn.Dense(self.num_classes, name="head")(x.reshape(x.shape[0], -1))


def _batch(n=8, shape=(4, 4, 1), classes=3):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
          "label": (np.arange(n) % classes).astype(np.int32)}


def _dp(clip, noise):
  return optax.chain(optax.contrib.differentially_private_aggregate(
      clip, noise, key=7), optax.sgd(0.5))


def _step_once(model, optimizer, step_factory, mesh, batch, shape=(4, 4, 1)):
  state = train.create_train_state(model, optimizer, shape,
                                   jax.random.PRNGKey(0))
  before = jax.device_get(state)  # the step donates its input state.
  step = step_factory(model, optimizer, mesh=mesh)
  new_state, metrics = step(train.replicate(state, mesh), batch,
                            jax.random.PRNGKey(1))
  return before, new_state, metrics


def _delta(before, after):
  return np.concatenate([np.ravel(a - b) for a, b in zip(
      jax.tree.leaves(jax.device_get(after.params)),
      jax.tree.leaves(jax.device_get(before.params)))])


def test_without_clipping_or_noise_it_is_the_engines_sgd_step():
  mesh = train.make_mesh()  # the suite's devices: each holds a share.
  batch = _batch()
  before, dp_state, metrics = _step_once(
      _Small(), _dp(1e6, 0.0), defenses.make_dp_sgd_step, mesh, batch)
  _, sgd_state, _ = _step_once(_Small(), optax.sgd(0.5),
                               train.make_train_step, mesh, batch)
  np.testing.assert_allclose(_delta(before, dp_state),
                             _delta(before, sgd_state), rtol=1e-5, atol=1e-7)
  assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_clipping_bounds_the_update_and_noise_has_the_right_scale():
  mesh = train.make_mesh()
  batch = _batch()
  before, clipped, _ = _step_once(_Small(), _dp(0.01, 0.0),
                                  defenses.make_dp_sgd_step, mesh, batch)
  # Every per-example gradient is clipped to norm 0.01, so the mean has
  # norm <= 0.01 and the SGD step (rate 0.5) <= 0.005.
  norm = np.linalg.norm(_delta(before, clipped))
  assert 0 < norm <= 0.5 * 0.01 + 1e-7
  _, noised, _ = _step_once(_Small(), _dp(0.01, 1.0),
                            defenses.make_dp_sgd_step, mesh, batch)
  # Noise N(0, (sigma C)^2) on the sum, divided by B = 8, times the rate.
  noise = _delta(before, noised) - _delta(before, clipped)
  assert np.std(noise) == pytest.approx(0.5 * 0.01 / 8, rel=0.3)


def test_the_suites_devices_match_one_with_batch_norm():
  model = get_model("cnn", 3, width=4, dense_width=8)
  batch = _batch(shape=(8, 8, 1))
  states = []
  for devices in (1, jax.device_count()):
    before, after, _ = _step_once(
        model, _dp(0.1, 0.0), defenses.make_dp_sgd_step,
        train.make_mesh(jax.devices()[:devices]), batch, shape=(8, 8, 1))
    states.append(after)
  np.testing.assert_allclose(_delta(before, states[0]),
                             _delta(before, states[1]), atol=1e-6)
  for a, b in zip(jax.tree.leaves(states[0].model_state),
                  jax.tree.leaves(states[1].model_state)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
