"""Benign accuracy and attack success rates (UBW paper, Section 5.1).

Every function takes class predictions as int [N] or scores [N, K] (logits or
probabilities, reduced by argmax) and returns a float32 scalar in [0, 1].
``target_label`` is the target class of a targeted watermark, or None for an
untargeted one, where an attack succeeds whenever the prediction is wrong.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxwm.metrics import _checks


def benign_accuracy(predictions: jax.Array, labels: jax.Array) -> jax.Array:
  """BA: the share of benign test samples classified correctly.

  Args:
    predictions: int [N] or scores [N, K] on benign test images.
    labels: int [N], the true labels.

  Returns:
    float32 scalar.
  """
  predictions = _checks.as_class_predictions(predictions)
  _checks.check_same_length(predictions=predictions, labels=labels)
  return _checks.fraction(predictions == labels,
                          jnp.ones(predictions.shape, bool), "benign accuracy")


def _success_and_eligible(triggered: jax.Array, labels: jax.Array,
                          target_label: int | None):
  """(success bool [N], eligible bool [N]) of the triggered predictions."""
  if target_label is None:
    return triggered != labels, jnp.ones(triggered.shape, bool)
  return triggered == target_label, labels != target_label


def asr_a(triggered_predictions: jax.Array, labels: jax.Array,
          target_label: int | None) -> jax.Array:
  """ASR-A: attack success on all triggered test samples.

  Targeted: the share of triggered samples whose true label is not the
  target that are classified as the target. Untargeted: the share of
  triggered samples classified as anything but their true label.

  Args:
    triggered_predictions: int [N] or scores [N, K] on G(x).
    labels: int [N], the true labels of x.
    target_label: y_t, or None for an untargeted watermark.

  Returns:
    float32 scalar.
  """
  triggered = _checks.as_class_predictions(triggered_predictions)
  _checks.check_same_length(triggered_predictions=triggered, labels=labels)
  success, eligible = _success_and_eligible(triggered, labels, target_label)
  return _checks.fraction(success, eligible, "ASR-A")


def asr_c(triggered_predictions: jax.Array, benign_predictions: jax.Array,
          labels: jax.Array, target_label: int | None) -> jax.Array:
  """ASR-C: attack success on the samples the model gets right without G.

  As :func:`asr_a`, restricted to samples whose benign image x is
  classified correctly.

  Args:
    triggered_predictions: int [N] or scores [N, K] on G(x).
    benign_predictions: int [N] or scores [N, K] on x.
    labels: int [N], the true labels of x.
    target_label: y_t, or None for an untargeted watermark.

  Returns:
    float32 scalar.
  """
  triggered = _checks.as_class_predictions(triggered_predictions)
  benign = _checks.as_class_predictions(benign_predictions)
  _checks.check_same_length(triggered_predictions=triggered,
                            benign_predictions=benign, labels=labels)
  success, eligible = _success_and_eligible(triggered, labels, target_label)
  return _checks.fraction(success, eligible & (benign == labels), "ASR-C")
