"""DP-SGD training as a defence against poisons (Fowl et al., App. A.2, A.5).

Differentially private SGD (Abadi et al., 2016) clips each example's
gradient to l2 norm C, sums, adds Gaussian noise N(0, (sigma C)^2) and
divides by the batch size, so no single (poisoned) example can move the
model far. Fowl et al. test it with C = 0.1 and noise sigma C = 0.01 C
(Table 5). The clipping and noise are optax's
``contrib.differentially_private_aggregate`` chained before the recipe's
optimizer.

The engine's step differentiates the batch-mean loss once, so it never
sees per-example gradients; :func:`make_dp_sgd_step` is therefore a step of
the same shape (``step(state, batch, rng) -> (state, metrics)``, jitted,
sharded, state donated) that takes them with ``jax.vmap`` over each
device's rows (:func:`jaxwm.alignment.objective.per_device_rows`), and
:func:`train_model` runs it through the engine's own ``fit``. Each example
passes through BatchNorm alone (statistics over its own pixels), and the
running statistics move by the mean of the per-example updates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxwm import alignment
from jaxwm.config_checks import raise_problems
from jaxwm.config_checks.training import training
from jaxwm.data.dataset import Dataset
from jaxwm.models import common as model_common
from jaxwm.train import compiler, losses, loop, optim, recipe, sharding
from jaxwm.train import step as step_lib
from jaxwm.train.state import create_train_state


def make_dp_sgd_step(model, optimizer: optax.GradientTransformation, *,
                     input_transform: step_lib.InputTransform | None = None,
                     mesh: Mesh | None = None) -> step_lib.StepFn:
  """A compiled training step on per-example gradients.

  Args:
    model: a jaxwm model.
    optimizer: an optax transformation whose first stage takes per-example
      gradients (leading batch axis), e.g. ``optax.chain(
      optax.contrib.differentially_private_aggregate(...), sgd)``; the
      state must have been created with it.
    input_transform: applied to the float images, keyed by the step's rng.
    mesh: device mesh; default all devices.

  Returns:
    ``step(state, batch, rng) -> (state, {"loss", "accuracy"})``; ``batch``
    has uint8 or float ``"image"`` [B, H, W, C] and int ``"label"`` [B].
  """
  mesh = sharding.make_mesh() if mesh is None else mesh

  def step(state, batch, rng):
    images = step_lib.to_float_images(batch["image"])
    if input_transform is not None:
      images = input_transform(images, rng)

    def local_gradients(params, model_state, images, labels):
      def example_loss(params, image, label):
        logits, _, new_state = model_common.apply_with_features(
            model, {"params": params, **model_state}, image[None], train=True)
        return losses.cross_entropy(logits, label[None])[0], (logits[0],
                                                               new_state)

      return jax.vmap(jax.value_and_grad(example_loss, has_aux=True),
                      in_axes=(None, 0, 0))(params, images, labels)

    (loss, (logits, new_states)), grads = alignment.per_device_rows(
        local_gradients, mesh, 2)(state.params, state.model_state, images,
                                  batch["label"])
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    model_state = dict(state.model_state)
    if new_states is not None:
      model_state["batch_stats"] = jax.tree.map(lambda s: jnp.mean(s, axis=0),
                                                new_states)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params,
                                                         updates),
                              model_state=model_state, opt_state=opt_state)
    return new_state, {"loss": jnp.mean(loss),
                       "accuracy": losses.accuracy(logits, batch["label"])}

  rep = sharding.replicated(mesh)
  return compiler.jit(step,
                      in_shardings=(rep, sharding.batch_sharded(mesh), rep),
                      out_shardings=(rep, rep), donate_argnums=(0,))


def train_model(config, train_data: Dataset, *, l2_clip: float,
                noise_multiplier: float, stream: int = 0,
                input_transform: step_lib.InputTransform | None = None,
                workdir: str | None = None,
                mesh: Mesh | None = None) -> recipe.TrainedModel:
  """Trains ``config.model`` with DP-SGD on the ``config.train`` recipe.

  Args:
    config: a config with the fields of ``configs/train.py``.
    train_data: the (possibly poisoned) training set.
    l2_clip: C, the per-example gradient norm bound (> 0).
    noise_multiplier: sigma, the noise standard deviation over C (>= 0).
    stream: the engine's key stream, as in ``recipe.train_model``; the
      noise is seeded from it too.
    input_transform: replaces the augmentation of ``config.train.augment``.
    workdir: checkpoint folder (resumable); None disables checkpoints.
    mesh: device mesh; default all devices.
  """
  if l2_clip <= 0 or noise_multiplier < 0:
    raise ValueError(f"l2_clip={l2_clip} must be > 0 and noise_multiplier="
                     f"{noise_multiplier} >= 0.")
  raise_problems(training(config))
  mesh = sharding.make_mesh() if mesh is None else mesh
  model = recipe.build_model(config, train_data.num_classes)
  steps_per_epoch = max(1, len(train_data) // config.train.batch_size)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)
  optimizer = optax.chain(
      optax.contrib.differentially_private_aggregate(
          l2_clip, noise_multiplier,
          key=int(jax.random.randint(jax.random.fold_in(key, 2), (), 0,
                                     2**31 - 1))),
      optim.make_optimizer(config.train, steps_per_epoch,
                           config.train.num_epochs))
  state = create_train_state(model, optimizer, train_data.image_shape,
                             jax.random.fold_in(key, 0))
  if input_transform is None:
    input_transform = recipe.input_transform_from_config(config.train.augment)
  step_fn = make_dp_sgd_step(model, optimizer,
                             input_transform=input_transform, mesh=mesh)
  identity = recipe.run_identity(
      config, stream=stream, input_transform=input_transform,
      extra={"dp_sgd": {"l2_clip": l2_clip,
                        "noise_multiplier": noise_multiplier}})
  state = loop.fit(
      step_fn, state, train_data, batch_size=config.train.batch_size,
      num_epochs=config.train.num_epochs, data_rng=jax.random.fold_in(key, 1),
      mesh=mesh, workdir=workdir, identity=identity,
      checkpoint_every_epochs=config.train.checkpoint_every_epochs,
      log_every_steps=config.train.log_every_steps,
      learning_rate=optim.schedule_from_config(
          config.train, steps_per_epoch, config.train.num_epochs))
  return recipe.TrainedModel(model, state, mesh,
                             step_lib.make_predict_fn(model, mesh),
                             config.eval_batch_size)
