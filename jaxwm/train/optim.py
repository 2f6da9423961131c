"""Optimizers and schedules from a config, and parameter freezing."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import optax


def learning_rate_schedule(kind: str, base: float, total_steps: int,
                           steps_per_epoch: int, *,
                           milestones: Sequence[int] = (),
                           gamma: float = 0.1,
                           warmup_epochs: float = 0.0) -> optax.Schedule:
  """A learning-rate schedule.

  Args:
    kind: ``"constant"``, ``"cosine"`` (to 0 at ``total_steps``) or ``"step"``
      (multiply by ``gamma`` at each epoch in ``milestones``).
    base: the peak learning rate.
    total_steps: the length of training in optimizer steps.
    steps_per_epoch: optimizer steps in one epoch.
    milestones: epochs at which ``"step"`` decays.
    gamma: decay factor of ``"step"``.
    warmup_epochs: linear warm-up from 0, in epochs.
  """
  warmup = int(round(warmup_epochs * steps_per_epoch))
  if kind == "constant":
    main = optax.constant_schedule(base)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(base, max(1, total_steps - warmup))
  elif kind == "step":
    main = optax.piecewise_constant_schedule(
        base, {int(m * steps_per_epoch) - warmup: gamma for m in milestones})
  else:
    raise ValueError(
        f"unknown schedule {kind!r}; use 'constant', 'cosine' or 'step'.")
  if warmup == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, base, warmup), main], [warmup])


def schedule_from_config(config, steps_per_epoch: int,
                         num_epochs: int) -> optax.Schedule:
  """The learning-rate schedule of :func:`make_optimizer` for ``config``."""
  return learning_rate_schedule(
      config.schedule, config.learning_rate, steps_per_epoch * num_epochs,
      steps_per_epoch, milestones=tuple(config.get("milestones", ())),
      gamma=config.get("gamma", 0.1),
      warmup_epochs=config.get("warmup_epochs", 0.0))


def make_optimizer(config, steps_per_epoch: int,
                   num_epochs: int) -> optax.GradientTransformation:
  """SGD with momentum (or Adam) with weight decay and a schedule.

  Args:
    config: a ConfigDict with ``optimizer`` (``"sgd"`` or ``"adam"``),
      ``learning_rate``, ``schedule``, ``momentum``, ``nesterov``,
      ``weight_decay``, ``milestones``, ``gamma``, ``warmup_epochs``.
    steps_per_epoch: optimizer steps in one epoch.
    num_epochs: epochs of training (sets the schedule's length).
  """
  schedule = schedule_from_config(config, steps_per_epoch, num_epochs)
  decay = optax.add_decayed_weights(config.weight_decay) if (
      config.weight_decay) else optax.identity()
  if config.optimizer == "sgd":
    base = optax.sgd(schedule, momentum=config.momentum or None,
                     nesterov=config.get("nesterov", False))
  elif config.optimizer == "adam":
    base = optax.adam(schedule)
  else:
    raise ValueError(
        f"unknown optimizer {config.optimizer!r}; use 'sgd' or 'adam'.")
  return optax.chain(decay, base)


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  """The names along a pytree path, e.g. ('head', 'kernel')."""
  return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def trainable_labels(params: Any,
                     trainable: Callable[[tuple[str, ...]], bool]) -> Any:
  """A pytree of ``"train"``/``"freeze"`` labels from a predicate on paths."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "train" if trainable(path_names(path)) else "freeze",
      params)


def freeze(optimizer: optax.GradientTransformation, params: Any,
           trainable: Callable[[tuple[str, ...]], bool]
           ) -> optax.GradientTransformation:
  """Applies ``optimizer`` only where ``trainable(path)`` holds; elsewhere the
  update is zero (fine-tuning the last layer: ``lambda p: p[0] == "head"``)."""
  return optax.multi_transform(
      {"train": optimizer, "freeze": optax.set_to_zero()},
      trainable_labels(params, trainable))
