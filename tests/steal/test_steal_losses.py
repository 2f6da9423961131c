"""The stealing attacks' losses against hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.steal import losses


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


VICTIM = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
STUDENT = np.array([[1.0, 1.0, 0.0], [-0.5, 0.7, 1.5]])


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_is_t_squared_kl_at_t(temperature):
  p = _softmax(VICTIM / temperature)
  q = _softmax(STUDENT / temperature)
  expected = temperature**2 * np.mean(np.sum(p * np.log(p / q), axis=-1))
  targets = losses.soft_targets(jnp.asarray(VICTIM), temperature)
  np.testing.assert_allclose(targets, p, rtol=1e-6)
  loss = losses.distillation_loss(temperature)(
      jnp.asarray(STUDENT, jnp.float32), {"label": targets}, {})
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_distillation_loss_is_zero_on_the_victims_own_logits():
  targets = losses.soft_targets(jnp.asarray(VICTIM), 2.0)
  loss = losses.distillation_loss(2.0)(jnp.asarray(VICTIM, jnp.float32),
                                       {"label": targets}, {})
  assert abs(float(loss)) < 1e-6


def test_distillation_loss_rejects_a_non_positive_temperature():
  with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
    losses.distillation_loss(0.0)


def test_l1_to_victim_logits_is_the_mean_absolute_difference():
  expected = np.mean(np.abs(STUDENT - VICTIM))
  loss = losses.l1_to_victim_logits(jnp.asarray(STUDENT),
                                    {"label": jnp.asarray(VICTIM)}, {})
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
