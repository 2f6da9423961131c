"""Conventions shared by every jaxwm model.

Every model is a ``flax.linen.Module`` with fields ``num_classes`` and ``dtype``
(the compute dtype; parameters stay float32) and
``__call__(x, train: bool = False) -> logits`` where

* ``x`` is float [B, H, W, C] in [0, 1] (any H, W >= 8 and any C); the model
  normalises it inside with :func:`normalize`;
* ``logits`` is float32 [B, num_classes];
* the classification layer is a ``nn.Dense`` named ``"head"`` (fine-tuning
  attacks freeze or re-initialise it by that name);
* named activations are recorded with ``self.sow("intermediates", name, a)``;
  the penultimate feature vector [B, D] is always sown as ``"features"``.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.models import normalization

HEAD = "head"
FEATURES = "features"

# Inputs in [0, 1] are mapped to roughly zero mean and unit variance.
INPUT_MEAN = 0.5
INPUT_STD = 0.25


def normalize(x: jax.Array, dtype: Any) -> jax.Array:
  """[B, H, W, C] in [0, 1] -> standardised, in the compute ``dtype``."""
  return ((x - INPUT_MEAN) / INPUT_STD).astype(dtype)


def batch_norm(train: bool, dtype: Any,
               name: str | None = None) -> normalization.BatchNorm:
  """BatchNorm with the momentum and epsilon used by every jaxwm model."""
  return normalization.BatchNorm(use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=dtype, name=name)


def classifier_head(features: jax.Array, num_classes: int, dtype: Any,
                    module: nn.Module) -> jax.Array:
  """Sows ``features`` [B, D] and returns float32 logits [B, num_classes]."""
  module.sow("intermediates", FEATURES, features)
  logits = nn.Dense(num_classes, dtype=dtype, name=HEAD)(features)
  return logits.astype(jnp.float32)


def apply_with_features(model: nn.Module, variables: Mapping[str, Any],
                        x: jax.Array, train: bool = False
                        ) -> tuple[jax.Array, dict[str, jax.Array], Any]:
  """Runs ``model`` and also returns its sown activations.

  Args:
    model: a jaxwm model.
    variables: {"params": ..., and "batch_stats" if the model has any}.
    x: float [B, H, W, C] in [0, 1].
    train: batch statistics mode; when True the updated model state is returned.

  Returns:
    (logits [B, K], {name: activation}, new model state or None). The
    ``"features"`` entry is the penultimate representation [B, D].
  """
  mutable = ["intermediates"] + (["batch_stats"] if train and
                                 "batch_stats" in variables else [])
  logits, updates = model.apply(variables, x, train=train, mutable=mutable)
  updates = dict(updates)
  sown = updates.pop("intermediates", {})
  activations = {name: value[0] for name, value in sown.items()}
  new_state = updates.get("batch_stats")
  return logits, activations, new_state
