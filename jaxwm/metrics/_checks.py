"""Input checks shared by the metrics; they run only on concrete arrays.

Under ``jax.jit`` the values are tracers and cannot be inspected, so the
checks that need values are skipped there; shape checks always run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class UndefinedMetricError(ValueError):
  """A rate over an empty set of samples (e.g. ASR-C when the model gets no
  eligible benign sample right): the metric has no value, the inputs are
  not wrong."""


def concrete(x: jax.Array) -> np.ndarray | None:
  """``x`` as a NumPy array, or None when it is traced under a transform."""
  try:
    return np.asarray(x)
  except (jax.errors.ConcretizationTypeError,
          jax.errors.TracerArrayConversionError):
    return None


def as_class_predictions(predictions: jax.Array) -> jax.Array:
  """int [N] class predictions, or scores [N, K] reduced by argmax -> [N]."""
  predictions = jnp.asarray(predictions)
  if predictions.ndim == 2:
    return jnp.argmax(predictions, axis=-1)
  if predictions.ndim != 1:
    raise ValueError(
        f"predictions must be class ids [N] or scores [N, K], got shape "
        f"{predictions.shape}.")
  return predictions


def check_same_length(**arrays: jax.Array) -> None:
  """Raises ValueError unless the arrays share one leading length N >= 1."""
  lengths = {name: jnp.shape(a)[0] for name, a in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"inputs must have the same length N, got {lengths}.")
  if not min(lengths.values()):
    raise ValueError(f"inputs are empty ({lengths}); pass at least one "
                     "sample.")


def check_labels(labels: jax.Array, num_classes: int, what: str) -> None:
  """Raises ValueError when concrete ``labels`` leave [0, num_classes)."""
  values = concrete(labels)
  if values is not None and values.size and (
      values.min() < 0 or values.max() >= num_classes):
    raise ValueError(
        f"{what} must lie in [0, {num_classes}), got values from "
        f"{values.min()} to {values.max()}; pass the right num_classes.")


def fraction(hits: jax.Array, eligible: jax.Array, what: str) -> jax.Array:
  """mean of ``hits`` over ``eligible`` (bool [N] each) -> float32 scalar.

  Raises UndefinedMetricError when no sample is eligible and the inputs are
  concrete; under ``jax.jit`` that case returns NaN.
  """
  count = jnp.sum(eligible)
  value = concrete(count)
  if value is not None and int(value) == 0:
    raise UndefinedMetricError(
        f"{what} is undefined: no test sample qualifies. Use more test "
        "samples, or check the target label and the model's accuracy.")
  return jnp.where(count > 0,
                   jnp.sum(hits & eligible) / jnp.maximum(count, 1),
                   jnp.nan).astype(jnp.float32)
