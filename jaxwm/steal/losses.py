"""The engine losses of the model-stealing attacks.

Each has the engine's signature ``loss_fn(logits, batch, activations) ->
scalar`` (:mod:`jaxwm.train.losses`), with ``logits`` the student's float32
[B, K] and ``batch["label"]`` what the victim answered for the batch's
images: probabilities float32 [B, K] (distillation, logit-query) or logits
float32 [B, K] (data-free distillation). The label-query and fine-tuning
attacks train on the victim's top-1 labels with the engine's own
:func:`jaxwm.train.losses.cross_entropy_loss`.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from jaxwm.train.losses import LossFn


def soft_targets(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """The victim's probabilities at ``temperature``: softmax(logits / T).

  Args:
    logits: float [N, K].
    temperature: T > 0; T > 1 softens the distribution (Hinton et al. 2015).

  Returns:
    float32 [N, K], rows summing to 1.
  """
  return jax.nn.softmax(jnp.asarray(logits, jnp.float32) / temperature,
                        axis=-1)


def kl_at_temperature(logits: jax.Array, batch: Mapping[str, jax.Array],
                      activations: Mapping[str, jax.Array], *,
                      temperature: float) -> jax.Array:
  """T^2 * mean_b KL(p_b || softmax(logits_b / T)), p = ``batch["label"]``.

  The distillation loss of Hinton et al. (2015) without its hard-label
  term: ``batch["label"]`` holds the victim's probabilities at the same T
  (:func:`soft_targets`), and the T^2 factor keeps the gradients' scale
  independent of T. At T = 1 it is the logit-query attack's KL divergence
  to the victim's probability vectors.

  Args:
    logits: the student's float32 [B, K].
    batch: ``"label"``, float [B, K] probabilities.
    activations: unused.
    temperature: T > 0.

  Returns:
    float32 scalar >= 0.
  """
  del activations
  log_student = jax.nn.log_softmax(logits / temperature, axis=-1)
  kl = optax.kl_divergence(log_student, batch["label"].astype(jnp.float32))
  return temperature**2 * jnp.mean(kl)


def distillation_loss(temperature: float) -> LossFn:
  """:func:`kl_at_temperature` at ``temperature``, as an engine loss."""
  if not temperature > 0.0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  return functools.partial(kl_at_temperature, temperature=float(temperature))


def mean_l1(student_logits: jax.Array, victim_logits: jax.Array
            ) -> jax.Array:
  """mean |student - victim| over the batch and the classes [B, K].

  The disagreement of data-free adversarial distillation (Fang et al.
  2019): the student minimises it, the generator maximises it.
  """
  return jnp.mean(jnp.abs(student_logits - victim_logits))


def l1_to_victim_logits(logits: jax.Array, batch: Mapping[str, jax.Array],
                        activations: Mapping[str, jax.Array]) -> jax.Array:
  """:func:`mean_l1` to ``batch["label"]``, the victim's logits [B, K]."""
  del activations
  return mean_l1(logits, batch["label"])
