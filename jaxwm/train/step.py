"""The step factory: one pure, jit-compiled, sharded training step.

Every model in jaxwm (victims, suspects, surrogates, stolen and fine-tuned
models) is trained by the step built here; methods differ only in the loss
function, the optimizer (freezing is an optimizer mask) and the input
transform (augmentation, input-noise defences).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxwm.models import common as model_common
from jaxwm.train import compiler, losses, sharding
from jaxwm.train.state import TrainState

Batch = Mapping[str, jax.Array]
# (images float [B, H, W, C] in [0, 1], key) -> images of the same shape.
InputTransform = Callable[[jax.Array, jax.Array], jax.Array]
StepFn = Callable[[TrainState, Batch, jax.Array],
                  tuple[TrainState, dict[str, jax.Array]]]


def to_float_images(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, C] -> float32 in [0, 1]; float inputs pass unchanged."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def make_train_step(model, optimizer: optax.GradientTransformation, *,
                    loss_fn: losses.LossFn = losses.cross_entropy_loss,
                    input_transform: InputTransform | None = None,
                    mesh: Mesh | None = None,
                    donate: bool = True) -> StepFn:
  """Builds ``step(state, batch, rng) -> (state, metrics)``, jit-compiled.

  Args:
    model: a jaxwm model.
    optimizer: the optax transformation the state was created with.
    loss_fn: ``(logits [B, K], batch, activations) -> scalar``.
    input_transform: applied to the float images inside the step, keyed by
      the step's rng (augmentation, additive-noise defences).
    mesh: device mesh; the state is replicated and the batch split along
      ``"data"``. Defaults to all devices.
    donate: donate the incoming state's buffers to the output.

  Returns:
    The compiled step. ``batch`` holds ``"image"`` (uint8 or float
    [B, H, W, C]) and ``"label"`` (int [B] or float [B, K]); ``metrics`` has
    ``"loss"`` and ``"accuracy"`` (scalars, on device).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh

  def step(state: TrainState, batch: Batch, rng: jax.Array):
    images = to_float_images(batch["image"])
    if input_transform is not None:
      images = input_transform(images, rng)

    def objective(params):
      logits, activations, new_model_state = model_common.apply_with_features(
          model, {"params": params, **state.model_state}, images, train=True)
      return loss_fn(logits, batch, activations), (logits, new_model_state)

    (loss, (logits, new_model_state)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    model_state = dict(state.model_state)
    if new_model_state is not None:
      model_state["batch_stats"] = new_model_state
    new_state = state.replace(step=state.step + 1, params=params,
                              model_state=model_state, opt_state=opt_state)
    metrics = {"loss": loss,
               "accuracy": losses.accuracy(logits, batch["label"])}
    return new_state, metrics

  rep = sharding.replicated(mesh)
  return compiler.jit(step,
                      in_shardings=(rep, sharding.batch_sharded(mesh), rep),
                      out_shardings=(rep, rep),
                      donate_argnums=(0,) if donate else ())


def make_predict_fn(model, mesh: Mesh | None = None
                    ) -> Callable[[Any, jax.Array], jax.Array]:
  """``predict(variables, images) -> logits`` [B, K], jit-compiled, sharded."""
  mesh = sharding.make_mesh() if mesh is None else mesh

  def predict(variables, images):
    return model.apply(variables, to_float_images(images), train=False)

  rep = sharding.replicated(mesh)
  return compiler.jit(predict,
                      in_shardings=(rep, sharding.batch_sharded(mesh)),
                      out_shardings=rep)
