"""Tests of D_p, D_s and D_c (Definitions 1-2) and Lemma 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import metrics

LN2 = np.log(2.0)


def test_entropy_in_nats_with_zero_log_zero():
  probabilities = jnp.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0],
                             [0.25, 0.25, 0.5]])
  np.testing.assert_allclose(metrics.entropy(probabilities),
                             [LN2, 0.0, 1.5 * LN2], rtol=1e-6)


def test_prediction_dispersibility_hand_worked():
  # Class 0 predicted as {0, 1}: H = ln 2; class 1 always 1: H = 0.
  # D_p = (2 ln 2 + 2 * 0) / 4.
  value = metrics.prediction_dispersibility(
      jnp.array([0, 1, 1, 1]), jnp.array([0, 0, 1, 1]), 3)
  assert value == pytest.approx(LN2 / 2, rel=1e-6)
  # Class 2 (3 samples) spread over 3 classes, class 0 (1 sample): H = 0.
  value = metrics.prediction_dispersibility(
      jnp.array([0, 1, 2, 2]), jnp.array([2, 2, 2, 0]), 3)
  assert value == pytest.approx(3 * np.log(3) / 4, rel=1e-6)


def test_prediction_dispersibility_spans_zero_to_ln_k():
  labels = jnp.repeat(jnp.arange(4), 4)
  uniform = jnp.tile(jnp.arange(4), 4)  # every class spread evenly
  assert metrics.prediction_dispersibility(uniform, labels, 4) == (
      pytest.approx(np.log(4), rel=1e-6))
  assert metrics.prediction_dispersibility(jnp.zeros(16, int), labels, 4) == 0
  scores = jax.nn.one_hot(uniform, 4)
  assert metrics.prediction_dispersibility(scores, labels, 4) == (
      pytest.approx(np.log(4), rel=1e-6))
  with pytest.raises(ValueError, match="predictions must lie"):
    metrics.prediction_dispersibility(jnp.array([0, 5]), jnp.array([0, 1]), 4)


def test_sample_and_class_dispersibility_hand_worked():
  probabilities = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
  labels = jnp.array([0, 0, 1])
  # D_s = (0 + 0 + ln 2) / 3.
  assert metrics.sample_dispersibility(probabilities) == pytest.approx(
      LN2 / 3, rel=1e-6)
  # Class 0 mean (0.5, 0.5): H = ln 2, weight 2; class 1: H = ln 2, weight 1.
  assert metrics.class_dispersibility(probabilities, labels) == pytest.approx(
      LN2, rel=1e-6)
  with pytest.raises(ValueError, match="labels must lie"):
    metrics.class_dispersibility(probabilities, jnp.array([0, 0, 2]))


def test_class_and_sample_dispersibility_are_differentiable():
  logits = jnp.array([[0.3, -0.2, 1.0], [0.0, 0.5, -1.0]])
  labels = jnp.array([0, 0])
  for fn in (metrics.sample_dispersibility,
             lambda p: metrics.class_dispersibility(p, labels)):
    grad = jax.grad(lambda z: fn(jax.nn.softmax(z)))(logits)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_entropy_from_logits_equals_the_entropy_of_the_softmax():
  logits = jnp.array([[0.3, -0.2, 1.0], [0.0, 0.0, 0.0], [5.0, -2.0, 1.0]])
  np.testing.assert_allclose(
      metrics.entropy_from_logits(logits),
      metrics.entropy(jax.nn.softmax(logits)), rtol=1e-6)
  assert float(metrics.entropy_from_logits(jnp.zeros(4))) == pytest.approx(
      np.log(4), rel=1e-6)


def test_entropies_have_finite_gradients_where_softmax_underflows():
  # A logit gap above ~104 rounds a float32 probability to exactly 0.
  logits = jnp.array([[200.0, 0.0, -5.0], [0.3, -0.2, 1.0]])
  labels = jnp.array([0, 0])
  assert float(jax.nn.softmax(logits)[0, 1]) == 0.0
  for fn in (lambda z: jnp.sum(metrics.entropy_from_logits(z)),
             lambda z: jnp.sum(metrics.entropy(jax.nn.softmax(z))),
             lambda z: metrics.sample_dispersibility(jax.nn.softmax(z)),
             lambda z: metrics.class_dispersibility(jax.nn.softmax(z),
                                                    labels)):
    grad = np.asarray(jax.grad(fn)(logits))
    assert np.all(np.isfinite(grad))
  # The saturated row's entropy is flat in its logits (to float32).
  grad = np.asarray(jax.grad(
      lambda z: jnp.sum(metrics.entropy_from_logits(z)))(logits))
  np.testing.assert_allclose(grad[0], 0.0, atol=1e-30)
  # Where p_k = 0 the entropy's derivative in p is finite (0 ln 0 = 0).
  assert np.all(np.isfinite(np.asarray(jax.grad(
      lambda p: metrics.entropy(p))(jnp.array([0.5, 0.5, 0.0])))))


@pytest.mark.parametrize("n", [2, 17, 64])
@pytest.mark.parametrize("k", [2, 10])
def test_lemma_1_class_dispersibility_exceeds_sample_over_n(n, k):
  """D_c > D_s / N on random inputs with N >= 2 (Lemma 1, Appendix A)."""
  rng = np.random.default_rng(n * 100 + k)
  draws = 64
  temperature = 10.0 ** rng.uniform(-1, 1, size=(draws, 1, 1))
  logits = rng.normal(size=(draws, n, k)) / temperature
  probabilities = jax.nn.softmax(jnp.asarray(logits, jnp.float32))
  labels = jnp.asarray(rng.integers(0, k, (draws, n)))
  d_c = jax.vmap(metrics.class_dispersibility)(probabilities, labels)
  d_s = jax.vmap(metrics.sample_dispersibility)(probabilities)
  assert np.all(d_c > d_s / n)
  assert np.all((d_c >= 0) & (d_c <= np.log(k) + 1e-5))
