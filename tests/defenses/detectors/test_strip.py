"""STRIP: entropies on fixed predictions and on a BadNets digits model."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.defenses import strip


class _FixedPrediction(nn.Module):
  """Predicts [1/2, 1/4, 1/4] when the image's mean is below 1/2, else
  [1, 0, 0] (almost): a superimposed bright image flips it."""

  num_classes: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    del train
    spread = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    certain = jnp.array([60.0, 0.0, 0.0])
    bright = jnp.mean(x, axis=(1, 2, 3))[:, None] >= 0.5
    return jnp.where(bright, certain, spread)


def test_entropy_is_the_mean_over_overlays_in_bits():
  model = _FixedPrediction()
  dark = np.zeros((2, 4, 4, 1), np.float32)
  pool = np.zeros((5, 4, 4, 1), np.float32)
  # Every overlay stays dark: H([1/2, 1/4, 1/4]) = 1.5 bits.
  entropies = strip.strip_entropies(model, {}, dark, pool,
                                    jax.random.PRNGKey(0))
  np.testing.assert_allclose(entropies, [1.5, 1.5], rtol=1e-6)
  # With weights 1/2 + 1/2, a white input over a black pool stays at mean
  # 1/2, "bright": entropy 0. Over a white pool it also stays bright.
  white = np.ones((1, 4, 4, 1), np.float32)
  half = strip.StripConfig(num_overlays=7, input_weight=0.5,
                           overlay_weight=0.5)
  assert strip.strip_entropies(model, {}, white, pool, jax.random.PRNGKey(0),
                               half)[0] == pytest.approx(0.0, abs=1e-6)
  # Half the pool white: the mean entropy lies strictly between 0 and 1.5.
  mixed = np.concatenate([pool, np.ones((5, 4, 4, 1), np.float32)])
  mean = strip.strip_entropies(model, {}, dark, mixed, jax.random.PRNGKey(0),
                               strip.StripConfig(num_overlays=200))
  assert np.all((mean > 0.5) & (mean < 1.0))


def test_refuses_mismatched_images():
  with pytest.raises(ValueError, match="one shape"):
    strip.strip_entropies(_FixedPrediction(), {}, np.zeros((2, 4, 4, 1)),
                          np.zeros((3, 5, 5, 1)), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="num_overlays"):
    strip.StripConfig(num_overlays=0)


def test_triggered_inputs_have_lower_entropy(badnets_digits):
  trained = badnets_digits.trained
  clean, triggered = badnets_digits.triggered_test()
  half = len(clean) // 2
  result = strip.strip(trained.model, trained.variables, triggered[:100],
                       clean[:100], clean[half:], jax.random.PRNGKey(2))
  # Measured: 0.0007 bits triggered, 0.70 clean, AUROC 1.0.
  assert result.mean_triggered_entropy < 0.1
  assert result.mean_clean_entropy > 5 * result.mean_triggered_entropy
  assert result.auroc > 0.95
  assert result.to_dict()["num_triggered"] == 100
