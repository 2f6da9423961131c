"""The training state: one frozen pytree that a jitted step consumes and returns."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, optimizer steps taken so far.
    params: the model parameters (float32 pytree).
    model_state: non-trainable collections, e.g. ``{"batch_stats": ...}``;
      an empty dict for models without any.
    opt_state: the optax optimizer state.
    rng: uint32 [2] base key; per-step keys are ``fold_in(rng, step)``.
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array

  def variables(self) -> dict[str, Any]:
    """The ``variables`` mapping that ``model.apply`` takes."""
    return {"params": self.params, **self.model_state}


def create_train_state(model, optimizer: optax.GradientTransformation,
                       image_shape: tuple[int, int, int],
                       rng: jax.Array) -> TrainState:
  """Initialises a model and optimizer.

  Args:
    model: a jaxwm model (``flax.linen.Module``).
    optimizer: an optax transformation.
    image_shape: (H, W, C) of the inputs.
    rng: a uint32 [2] key; ``fold_in(rng, 0)`` initialises the parameters and
      ``fold_in(rng, 1)`` becomes ``state.rng``.
  """
  variables = jax.jit(model.init, static_argnames="train")(
      jax.random.fold_in(rng, 0), jnp.zeros((1, *image_shape), jnp.float32),
      train=False)
  variables = dict(variables)
  params = variables.pop("params")
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=variables,
      opt_state=optimizer.init(params),
      rng=jax.random.fold_in(rng, 1))
