"""Loss functions for the training engine.

A loss function has the signature ``loss_fn(logits, batch, activations) ->
scalar`` where ``logits`` is float32 [B, K], ``batch`` the dict the step
received (``"label"`` is int [B] or soft float [B, K]) and ``activations`` the
model's sown intermediates (``"features"`` [B, D] and named blocks). Extra
terms on features (feature alignment, attention transfer) are written as such
functions and passed to :func:`jaxwm.train.make_train_step`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

LossFn = Callable[[jax.Array, Mapping[str, jax.Array],
                   Mapping[str, jax.Array]], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy [B] for int labels [B] or soft labels [B, K]."""
  if labels.ndim == logits.ndim:
    return optax.softmax_cross_entropy(logits, labels)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy_loss(logits: jax.Array, batch: Mapping[str, jax.Array],
                       activations: Mapping[str, jax.Array]) -> jax.Array:
  """Mean cross-entropy against ``batch["label"]`` (hard or soft)."""
  del activations
  return jnp.mean(cross_entropy(logits, batch["label"]))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of argmax predictions equal to the (argmax of the) labels."""
  if labels.ndim == logits.ndim:
    labels = jnp.argmax(labels, axis=-1)
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
