"""Dispersibility of predictions (UBW paper, Definitions 1 and 2).

All entropies use the natural logarithm, so every dispersibility lies in
[0, ln K]. The prediction dispersibility D_p counts hard predictions; the
sample-wise D_s and class-wise D_c are differentiable surrogates computed
from probability vectors (Section 3.4), with D_c > D_s / N (Lemma 1) when
N >= 2 and some prediction has positive entropy (equality is possible for
N = 1 or all-one-hot predictions).

Every entropy has a finite gradient, also where a probability is exactly 0
(a float32 softmax underflows to 0 beyond a logit gap of about 104): the
term 0 ln 0 is the constant 0 there. Objectives that start from logits use
:func:`entropy_from_logits`, which never forms ln of a rounded probability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxwm.metrics import _checks


def entropy(probabilities: jax.Array) -> jax.Array:
  """H(p) = -sum_k p_k ln p_k over the last axis, with 0 ln 0 = 0.

  Differentiable with a finite gradient everywhere on the simplex: where
  p_k = 0 its term and that term's derivative are 0 (``xlogy(p, p)`` would
  give 0 / 0 = NaN there).

  Args:
    probabilities: float [..., K], rows summing to 1.

  Returns:
    float [...], in nats.
  """
  positive = probabilities > 0
  safe = jnp.where(positive, probabilities, 1.0)
  return -jnp.sum(jnp.where(positive, probabilities * jnp.log(safe), 0.0),
                  axis=-1)


def entropy_from_logits(logits: jax.Array) -> jax.Array:
  """H(softmax(z)) = -sum_k softmax(z)_k log_softmax(z)_k, over the last axis.

  Exact and with a finite gradient for any finite logits, however far
  apart (e.g. [200, 0, -5] in float32, where softmax rounds to [1, 0, 0]).

  Args:
    logits: float [..., K].

  Returns:
    float32 [...], in nats.
  """
  log_probabilities = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(jnp.exp(log_probabilities) * log_probabilities, axis=-1)


def _class_weighted_entropy(class_distributions: jax.Array,
                            class_counts: jax.Array) -> jax.Array:
  """(1/N) sum_j n_j H(P^(j)) for P [K, K] rows and counts n [K]."""
  return jnp.sum(class_counts * entropy(class_distributions)) / jnp.sum(
      class_counts)


def _class_counts(labels: jax.Array, num_classes: int) -> jax.Array:
  return jnp.zeros(num_classes, jnp.float32).at[labels].add(1.0)


def prediction_dispersibility(predictions: jax.Array, labels: jax.Array,
                              num_classes: int) -> jax.Array:
  """D_p, the averaged prediction dispersibility (Definition 1, Eqs. 1-2).

  P^(j)_i is the share of samples with true label j predicted as i, and
  D_p = (1/N) sum_j n_j H(P^(j)), where n_j counts label j.

  Args:
    predictions: int [N] or scores [N, K], usually on triggered images.
    labels: int [N], the true labels.
    num_classes: K.

  Returns:
    float32 scalar in [0, ln K].
  """
  predictions = _checks.as_class_predictions(predictions)
  _checks.check_same_length(predictions=predictions, labels=labels)
  _checks.check_labels(labels, num_classes, "labels")
  _checks.check_labels(predictions, num_classes, "predictions")
  confusion = jnp.zeros((num_classes, num_classes), jnp.float32).at[
      labels, predictions].add(1.0)
  counts = jnp.sum(confusion, axis=1)
  distributions = confusion / jnp.maximum(counts, 1.0)[:, None]
  return _class_weighted_entropy(distributions, counts)


def sample_dispersibility(probabilities: jax.Array) -> jax.Array:
  """D_s = (1/N) sum_i H(f(x_i)) (Definition 2, Eq. 4).

  Args:
    probabilities: float [N, K], the model's probability vectors f(x_i).

  Returns:
    float scalar in [0, ln K]; differentiable.
  """
  return jnp.mean(entropy(probabilities))


def class_dispersibility(probabilities: jax.Array,
                         labels: jax.Array) -> jax.Array:
  """D_c, the entropy of each class's mean prediction (Definition 2, Eq. 5).

  D_c = (1/N) sum_j n_j H(mean of f(x_k) over the samples with y_k = j).

  Args:
    probabilities: float [N, K], the model's probability vectors f(x_i).
    labels: int [N] in [0, K), the true labels.

  Returns:
    float scalar in [0, ln K]; differentiable.
  """
  num_classes = probabilities.shape[-1]
  _checks.check_same_length(probabilities=probabilities, labels=labels)
  _checks.check_labels(labels, num_classes, "labels")
  counts = _class_counts(labels, num_classes)
  sums = jnp.zeros((num_classes, num_classes),
                   probabilities.dtype).at[labels].add(probabilities)
  return _class_weighted_entropy(sums / jnp.maximum(counts, 1.0)[:, None],
                                 counts)
