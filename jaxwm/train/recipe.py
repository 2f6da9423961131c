"""Config-driven training: data, model, optimizer and engine from a ConfigDict.

Every launcher trains its models (benign, watermarked, surrogate, stolen,
fine-tuned) through :func:`train_model`; :func:`train_ensemble` trains many
models of one config at once, each as :func:`train_model` would.

The config fields used are those of ``configs/train.py``: ``seed``,
``dataset``, ``data_dir``, ``model``, ``model_kwargs``, ``train_fraction``,
``eval_batch_size`` and the ``train`` block.

A model trained with a ``workdir`` is checkpointed with its identity
(:func:`run_identity`): a later call with the same ``workdir`` resumes or
reuses it only when every field that determines the model is the same, and
raises :class:`jaxwm.identity.StaleRunError` otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from jaxwm import data as jaxwm_data
from jaxwm import identity as identity_lib
from jaxwm.config_checks import raise_problems
from jaxwm.config_checks.training import training
from jaxwm.data import augment
from jaxwm.fingerprint import callable_identity, tree_digest
from jaxwm.models import get_model
from jaxwm.train import ensemble, loop, losses, optim, sharding
from jaxwm.train import step as step_lib
from jaxwm.train.saved_model import MODEL_SPEC, export_model, load_model
from jaxwm.train.state import TrainState, create_train_state
from jaxwm.train.trained_model import ModelSpec, TrainedModel


# Schedules whose learning rate at a step does not depend on the number of
# epochs: training on from a shorter run's checkpoint equals training longer
# in one go, so the number of epochs is not part of such a run's identity.
RESUMABLE_SCHEDULES = ("step", "constant")


def load_datasets(config) -> tuple[jaxwm_data.Dataset, jaxwm_data.Dataset]:
  """(train, test) of ``config.dataset``, the train set subsampled to
  ``config.train_fraction`` (stratified, seeded by ``config.seed``).

  Raises:
    ValueError: the splits differ in image shape or classes (checked here,
      before any training).
  """
  train, test = jaxwm_data.load_splits(config.dataset, config.data_dir)
  if config.train_fraction < 1.0:
    train = jaxwm_data.stratified_subset(train, config.train_fraction,
                                         config.seed)
  return train, test


def load_owner_and_attacker(config, attacker_fraction: float
                            ) -> tuple[jaxwm_data.Dataset, jaxwm_data.Dataset,
                                       jaxwm_data.Dataset]:
  """(owner's data, attacker's data, test set): :func:`load_datasets`'s
  training set split into disjoint parts, the attacker's a stratified
  ``attacker_fraction`` of it (seeded by ``config.seed``)."""
  train, test = load_datasets(config)
  attacker, owner = jaxwm_data.disjoint_split(train, attacker_fraction,
                                              config.seed)
  logging.info("owner: %d images, attacker: %d, test: %d", len(owner),
               len(attacker), len(test))
  return owner, attacker, test


def build_model(config, num_classes: int):
  return get_model(config.model, num_classes, dtype=config.train.dtype,
                   **config.model_kwargs.to_dict())


def model_spec(config, train_data: jaxwm_data.Dataset) -> ModelSpec:
  """The :class:`ModelSpec` of ``config.model`` trained on ``train_data``."""
  return ModelSpec(config.model, config.model_kwargs.to_dict(),
                   train_data.num_classes, train_data.image_shape,
                   str(config.train.dtype))


def input_transform_from_config(augment_config) -> step_lib.InputTransform:
  """The on-device augmentation described by ``train.augment``."""
  return augment.AugmentConfig(**augment_config.to_dict()).apply


def run_identity(config, *, stream: int = 0,
                 loss_fn: losses.LossFn = losses.cross_entropy_loss,
                 init_variables: dict[str, Any] | None = None,
                 trainable_paths: Sequence[str] | None = None,
                 input_transform: step_lib.InputTransform | None = None,
                 batch_fn: loop.BatchFn | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Everything besides its data that determines a :func:`train_model` run.

  The record its checkpoints keep, to which :func:`jaxwm.train.fit` adds the
  training data's identity, the batch size and the code versions.

  Args:
    config: a config with the fields of ``configs/train.py``.
    stream, loss_fn, init_variables, input_transform, batch_fn: as in
      :func:`train_model`.
    trainable_paths: the ``/``-joined paths of the trainable parameters;
      None when all are.
    extra: further fields of a run that trains differently (e.g. DP-SGD's
      clipping and noise).

  Returns:
    A JSON-able dict: the :func:`jaxwm.identity.training_fields` of
    ``config`` (without ``train.num_epochs`` for the
    :data:`RESUMABLE_SCHEDULES`), ``stream``, the SHA-256 of
    ``init_variables`` (None: a fresh initialisation), ``trainable``, and
    for ``loss_fn``, ``input_transform`` and ``batch_fn`` their
    :func:`jaxwm.fingerprint.callable_identity` (their qualified name and a
    digest of what they capture; None: the default of ``config``).
  """
  fields = identity_lib.training_fields(config)
  if config.train.schedule in RESUMABLE_SCHEDULES:
    del fields["train"]["num_epochs"]
  return {
      **fields, "stream": stream,
      "init_variables": (None if init_variables is None else
                         tree_digest(init_variables)),
      "trainable": None if trainable_paths is None else sorted(
          trainable_paths),
      "loss_fn": callable_identity(loss_fn),
      "input_transform": callable_identity(input_transform),
      "batch_fn": callable_identity(batch_fn),
      **(extra or {})}


def measurement_identity(config, stream: int, **datasets: jaxwm_data.Dataset
                         ) -> dict[str, Any]:
  """The record of a measurement taken along a :func:`train_model` run.

  For results kept on disk beside a model (e.g. a curve over its epochs):
  the :func:`run_identity` of the model of ``config`` and ``stream``, the
  code versions and the :func:`jaxwm.identity.dataset_identity` of each
  dataset, by the keyword it is passed with.
  """
  return identity_lib.canonical({
      **run_identity(config, stream=stream), **identity_lib.code_versions(),
      **{name: identity_lib.dataset_identity(data)
         for name, data in datasets.items()}})


def _trainable_paths(params: Any,
                     trainable: Callable[[tuple[str, ...]], bool]
                     ) -> list[str]:
  labels = jax.tree_util.tree_flatten_with_path(
      optim.trainable_labels(params, trainable))[0]
  return ["/".join(optim.path_names(path)) for path, label in labels
          if label == "train"]


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
    workdir: checkpoint folder (resumable); None disables checkpoints. A
      checkpoint there made by another run (any field of
      :func:`run_identity` or of the training data differs) raises
      :class:`jaxwm.identity.StaleRunError` instead of being restored.
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

  Raises:
    ConfigError: every bad setting of the model and the recipe, before
      anything is built.
  """
  raise_problems(training(config))
  mesh = sharding.make_mesh() if mesh is None else mesh
  recipe = config.train
  spec = model_spec(config, train_data)
  model = spec.build()
  optimizer, schedule = _optimizer(recipe, len(train_data))
  key = _model_key(config.seed, stream)
  state = create_train_state(model, optimizer, train_data.image_shape,
                             jax.random.fold_in(key, 0))
  identity = run_identity(
      config, stream=stream, loss_fn=loss_fn, init_variables=init_variables,
      trainable_paths=(None if trainable is None else
                       _trainable_paths(state.params, trainable)),
      input_transform=input_transform, batch_fn=batch_fn) if workdir else None
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
      targets=targets, mesh=mesh, workdir=workdir, identity=identity,
      checkpoint_every_epochs=recipe.checkpoint_every_epochs,
      log_every_steps=recipe.log_every_steps, batch_fn=batch_fn,
      on_epoch_end=on_epoch_end, learning_rate=schedule,
      saved_with={MODEL_SPEC: spec.to_json()})
  return TrainedModel(model, state, mesh, step_lib.make_predict_fn(model, mesh),
                      config.eval_batch_size, spec)


def _optimizer(recipe, num_examples: int):
  """(optimizer, learning-rate schedule) of ``recipe`` for a model trained
  on ``num_examples`` examples."""
  steps_per_epoch = max(1, num_examples // recipe.batch_size)
  return (optim.make_optimizer(recipe, steps_per_epoch, recipe.num_epochs),
          optim.schedule_from_config(recipe, steps_per_epoch,
                                     recipe.num_epochs))


def _model_key(seed: int, stream: int) -> jax.Array:
  """The key of a model: ``fold_in(PRNGKey(seed), stream)``; its
  ``fold_in(., 0)`` initialises the state, ``fold_in(., 1)`` orders the
  data."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), stream)


def train_ensemble(config, train_data: jaxwm_data.Dataset,
                   member_rows: np.ndarray, seeds: Sequence[int], *,
                   strategy: str = ensemble.AUTO,
                   mesh: Mesh | None = None) -> list[TrainedModel]:
  """Trains E models of ``config`` at once, in one program.

  Member e is the model that :func:`train_model` trains, with
  ``config.seed = seeds[e]`` and stream 0, on
  ``train_data.take(member_rows[e])``: the same initialisation, data order
  and augmentation keys (:mod:`jaxwm.train.ensemble`).

  Args:
    config: a config with the fields of ``configs/train.py``.
    train_data: the examples every member draws its rows from.
    member_rows: int [E, M], the rows of each member.
    seeds: E seeds, one per member.
    strategy: ``"vmap"``, ``"map"``, ``"unroll"`` or ``"auto"`` (the
      backend's, see
      :func:`jaxwm.train.ensemble.choose_strategy`).
    mesh: device mesh; default all devices.

  Returns:
    The E trained models.

  Raises:
    ConfigError: every bad setting of the model and the recipe.
    ValueError: ``seeds`` and ``member_rows`` disagree in E.
  """
  raise_problems(training(config))
  member_rows = np.asarray(member_rows)
  if member_rows.ndim != 2 or member_rows.shape[0] != len(seeds):
    raise ValueError(
        f"member_rows must be [E, M] with E = len(seeds) = {len(seeds)}, "
        f"got shape {member_rows.shape}.")
  mesh = sharding.make_mesh() if mesh is None else mesh
  recipe = config.train
  spec = model_spec(config, train_data)
  model = spec.build()
  optimizer, schedule = _optimizer(recipe, member_rows.shape[1])
  keys = [_model_key(seed, 0) for seed in seeds]
  states = [create_train_state(model, optimizer, train_data.image_shape,
                               jax.random.fold_in(key, 0)) for key in keys]
  step_fn = step_lib.make_train_step(
      model, optimizer, mesh=mesh, ensemble=strategy, members=len(seeds),
      input_transform=input_transform_from_config(recipe.augment))
  state = loop.fit(
      step_fn, ensemble.stack(states), train_data,
      batch_size=recipe.batch_size, num_epochs=recipe.num_epochs,
      data_rng=ensemble.stack([jax.random.fold_in(key, 1) for key in keys]),
      mesh=mesh, log_every_steps=recipe.log_every_steps,
      learning_rate=schedule, members=member_rows)
  predict_fn = step_lib.make_predict_fn(model, mesh)
  return [TrainedModel(model, ensemble.member(state, index), mesh, predict_fn,
                       config.eval_batch_size, spec)
          for index in range(len(seeds))]


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
