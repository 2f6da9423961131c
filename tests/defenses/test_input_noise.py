"""Input-noise defences: Gaussian smoothing, additive noise, composition."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import defenses


def test_gaussian_blur_hand_values():
  constant = jnp.full((2, 6, 6, 3), 0.3)
  np.testing.assert_allclose(defenses.gaussian_blur(constant, 2, 1.0),
                             constant, rtol=1e-6)
  impulse = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
  out = np.asarray(defenses.gaussian_blur(impulse, 2, 1.0))[0, :, :, 0]
  total = 1 + 2 * math.exp(-0.5) + 2 * math.exp(-2)
  w0, w1 = 1 / total, math.exp(-0.5) / total
  assert out[4, 4] == pytest.approx(w0 * w0, rel=1e-5)
  assert out[4, 5] == pytest.approx(w0 * w1, rel=1e-5)
  assert out[0, 0] == 0.0 and out.sum() == pytest.approx(1.0, rel=1e-5)
  with pytest.raises(ValueError, match="smaller than the image"):
    defenses.gaussian_blur(jnp.zeros((1, 2, 2, 1)), 2, 1.0)
  with pytest.raises(ValueError, match="radius"):
    defenses.gaussian_smoothing(radius=0)


def test_additive_noise_is_bounded_fresh_and_clipped():
  images = jnp.full((4, 8, 8, 1), 0.5).at[:, 0].set(0.0)
  transform = defenses.additive_noise(8 / 255)
  a = np.asarray(transform(images, jax.random.PRNGKey(0)))
  b = np.asarray(transform(images, jax.random.PRNGKey(1)))
  assert np.abs(a - np.asarray(images)).max() <= 8 / 255 + 1e-7
  assert a.min() >= 0.0 and not np.array_equal(a, b)
  assert abs(float(np.mean(a[:, 1:] - 0.5))) < 0.003
  with pytest.raises(ValueError, match="pixel units"):
    defenses.additive_noise(8)


def test_compose_applies_in_order_with_folded_keys():
  def add_key(images, key):
    return images * 10 + jax.random.key_data(key)[-1].astype(jnp.float32) % 7

  images = jnp.ones((1, 2, 2, 1))
  key = jax.random.PRNGKey(3)
  composed = defenses.compose(add_key, add_key)(images, key)
  expected = add_key(add_key(images, jax.random.fold_in(key, 0)),
                     jax.random.fold_in(key, 1))
  np.testing.assert_array_equal(composed, expected)
