"""Tests of benign accuracy, ASR-A and ASR-C against hand-worked values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import metrics

LABELS = jnp.array([0, 1, 2, 2, 1, 0])
BENIGN = jnp.array([0, 1, 2, 0, 1, 1])     # wrong on samples 3 and 5
TRIGGERED = jnp.array([0, 0, 0, 0, 2, 1])


def test_benign_accuracy_counts_correct_predictions():
  assert metrics.benign_accuracy(BENIGN, LABELS) == pytest.approx(4 / 6)
  scores = jax.nn.one_hot(BENIGN, 3) * 5.0
  assert metrics.benign_accuracy(scores, LABELS) == pytest.approx(4 / 6)


def test_targeted_asr_skips_target_class_samples():
  # Target 0: samples 1-4 qualify; 1, 2, 3 hit the target.
  assert metrics.asr_a(TRIGGERED, LABELS, 0) == pytest.approx(3 / 4)
  # ASR-C also needs a correct benign prediction: samples 1, 2, 4 -> 2 hits.
  assert metrics.asr_c(TRIGGERED, BENIGN, LABELS, 0) == pytest.approx(2 / 3)


def test_untargeted_asr_counts_any_wrong_label():
  # Wrong triggered predictions: samples 1, 2, 3, 4, 5 (not 0) -> 5 of 6.
  assert metrics.asr_a(TRIGGERED, LABELS, None) == pytest.approx(5 / 6)
  # Correct benign: 0, 1, 2, 4; of those 1, 2, 4 are wrong when triggered.
  assert metrics.asr_c(TRIGGERED, BENIGN, LABELS, None) == pytest.approx(3 / 4)


def test_metrics_jit_and_accept_scores():
  scores = jax.nn.one_hot(TRIGGERED, 3)
  asr_c = jax.jit(metrics.asr_c, static_argnums=3)
  assert asr_c(scores, BENIGN, LABELS, 0) == pytest.approx(2 / 3)
  # With no eligible sample, a jitted call cannot raise and returns NaN.
  assert np.isnan(asr_c(scores, BENIGN, jnp.zeros(6, int), 0))


def test_metrics_raise_on_undefined_or_mismatched_inputs():
  with pytest.raises(ValueError, match="no test sample qualifies"):
    metrics.asr_a(TRIGGERED, jnp.zeros(6, int), 0)
  with pytest.raises(ValueError, match="no test sample qualifies"):
    metrics.asr_c(TRIGGERED, jnp.full(6, 2), jnp.zeros(6, int), None)
  with pytest.raises(ValueError, match="same length"):
    metrics.benign_accuracy(BENIGN, LABELS[:5])
  with pytest.raises(ValueError, match="empty"):
    metrics.benign_accuracy(jnp.zeros(0, int), jnp.zeros(0, int))
  with pytest.raises(ValueError, match="class ids"):
    metrics.benign_accuracy(jnp.zeros((6, 3, 1)), LABELS)
