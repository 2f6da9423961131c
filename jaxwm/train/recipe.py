"""Config-driven training: data, model, optimizer and engine from a ConfigDict.

Every launcher trains its models (benign, watermarked, surrogate, stolen,
fine-tuned) through :func:`train_model`; :func:`train_and_evaluate` is the
whole ``experiments/train.py`` job, importable from a notebook.

The config fields used are those of ``configs/train.py``: ``seed``,
``dataset``, ``data_dir``, ``model``, ``model_kwargs``, ``train_fraction``,
``eval_batch_size`` and the ``train`` block.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from jaxwm import data as jaxwm_data
from jaxwm.data import augment
from jaxwm.models import get_model
from jaxwm.train import loop, losses, optim, sharding, step as step_lib
from jaxwm.train.state import TrainState, create_train_state


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A trained model with the helpers that metrics and verification need."""

  model: Any
  state: TrainState
  mesh: Mesh
  predict_fn: Callable[[Any, jax.Array], jax.Array]
  eval_batch_size: int = 1000

  @property
  def variables(self) -> dict[str, Any]:
    return self.state.variables()

  def logits(self, images: np.ndarray) -> np.ndarray:
    """float32 [N, K] for uint8 images or float images in [0, 1], [N, H, W, C]."""
    return loop.predict_logits(self.predict_fn, self.variables,
                               np.asarray(images), self.eval_batch_size,
                               self.mesh)

  def predict_proba(self, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities float64 [N, K]: the black-box query interface."""
    return np.asarray(jax.nn.softmax(self.logits(images).astype(np.float64)))

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Predicted labels int [N]."""
    return np.argmax(self.logits(images), axis=-1)

  def evaluate(self, dataset: jaxwm_data.Dataset) -> dict[str, float]:
    return loop.evaluate(self.predict_fn, self.variables, dataset,
                         self.eval_batch_size, self.mesh)


def load_datasets(config) -> tuple[jaxwm_data.Dataset, jaxwm_data.Dataset]:
  """(train, test) of ``config.dataset``, the train set subsampled to
  ``config.train_fraction`` (stratified, seeded by ``config.seed``)."""
  train = jaxwm_data.load(config.dataset, "train", config.data_dir)
  test = jaxwm_data.load(config.dataset, "test", config.data_dir)
  if config.train_fraction < 1.0:
    train = jaxwm_data.stratified_subset(train, config.train_fraction,
                                         config.seed)
  return train, test


def build_model(config, num_classes: int):
  return get_model(config.model, num_classes, dtype=config.train.dtype,
                   **config.model_kwargs.to_dict())


def input_transform_from_config(augment_config) -> step_lib.InputTransform:
  """The on-device augmentation described by ``train.augment``."""
  return augment.AugmentConfig(**augment_config.to_dict()).apply


def train_model(config, train_data: jaxwm_data.Dataset, *,
                workdir: str | None = None,
                stream: int = 0,
                loss_fn: losses.LossFn = losses.cross_entropy_loss,
                targets: np.ndarray | None = None,
                init_variables: dict[str, Any] | None = None,
                trainable: Callable[[tuple[str, ...]], bool] | None = None,
                input_transform: step_lib.InputTransform | None = None,
                batch_fn: loop.BatchFn | None = None,
                on_epoch_end: Callable[[int, TrainState], Any] | None = None,
                mesh: Mesh | None = None) -> TrainedModel:
  """Trains ``config.model`` on ``train_data`` with the ``config.train`` recipe.

  Args:
    config: a config with the fields of ``configs/train.py``.
    train_data: the training set.
    workdir: checkpoint folder (resumable); None disables checkpoints.
    stream: distinguishes models of one experiment: the keys are
      ``fold_in(PRNGKey(config.seed), stream)``.
    loss_fn: the engine's loss function.
    targets: labels replacing ``train_data.labels`` (int [N] or soft [N, K]).
    init_variables: start from these variables (fine-tuning) instead of a
      fresh initialisation; a ``head`` missing from them is initialised anew.
    trainable: predicate on parameter paths; others stay frozen.
    input_transform: replaces the augmentation of ``config.train.augment``.
    batch_fn: on-device transform of each batch (e.g. trigger-set mixing).
    on_epoch_end: called as ``on_epoch_end(epoch, state)`` after each epoch
      trained in this call (not for epochs restored from ``workdir``).
    mesh: device mesh; default all devices.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  recipe = config.train
  model = build_model(config, train_data.num_classes)
  steps_per_epoch = len(train_data) // recipe.batch_size
  optimizer = optim.make_optimizer(recipe, max(1, steps_per_epoch),
                                   recipe.num_epochs)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)
  state = create_train_state(model, optimizer, train_data.image_shape,
                             jax.random.fold_in(key, 0))
  if init_variables is not None:
    state = _start_from(state, init_variables, optimizer)
  if trainable is not None:
    optimizer = optim.freeze(optimizer, state.params, trainable)
    state = state.replace(opt_state=optimizer.init(state.params))
  if input_transform is None:
    input_transform = input_transform_from_config(recipe.augment)
  step_fn = step_lib.make_train_step(model, optimizer, loss_fn=loss_fn,
                                     input_transform=input_transform,
                                     mesh=mesh)
  state = loop.fit(
      step_fn, state, train_data, batch_size=recipe.batch_size,
      num_epochs=recipe.num_epochs, data_rng=jax.random.fold_in(key, 1),
      targets=targets, mesh=mesh, workdir=workdir,
      checkpoint_every_epochs=recipe.checkpoint_every_epochs,
      log_every_steps=recipe.log_every_steps, batch_fn=batch_fn,
      on_epoch_end=on_epoch_end,
      learning_rate=optim.schedule_from_config(
          recipe, max(1, steps_per_epoch), recipe.num_epochs))
  return TrainedModel(model, state, mesh, step_lib.make_predict_fn(model, mesh),
                      config.eval_batch_size)


def _start_from(state: TrainState, variables: dict[str, Any],
                optimizer) -> TrainState:
  """``state`` with parameters and model state copied from ``variables``.

  A parameter collection present in ``state`` but absent from ``variables``
  (a re-initialised head) keeps its fresh initialisation.
  """
  variables = jax.device_get(dict(variables))
  params = {**jax.device_get(state.params), **variables["params"]}
  model_state = {k: v for k, v in variables.items() if k != "params"}
  params = jax.tree.map(jnp.asarray, params)
  return state.replace(params=params,
                       model_state=jax.tree.map(jnp.asarray, model_state),
                       opt_state=optimizer.init(params))


def train_and_evaluate(config, workdir: str,
                       metrics: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
  """The ``train`` experiment: fit ``config.model`` and report test accuracy.

  Args:
    config: a config from ``configs/train.py``.
    workdir: the checkpoint folder's parent.
    metrics: the dict to fill as values are measured (the launcher's, so
      that a failure still reports them); default a new one.

  Returns:
    {"dataset", "model", "metrics": {"benign_accuracy", "test_loss",
    "train_examples"}} as the launcher's results contract expects.
  """
  metrics = {} if metrics is None else metrics
  train, test = load_datasets(config)
  metrics["train_examples"] = len(train)
  logging.info("Training %s on %d %s images %s", config.model, len(train),
               config.dataset, train.image_shape)
  trained = train_model(config, train,
                        workdir=os.path.join(workdir, "model"))
  scores = trained.evaluate(test)
  metrics.update(benign_accuracy=scores["accuracy"],
                 test_loss=scores["loss"])
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
