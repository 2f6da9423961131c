"""MCR: mode connectivity repair (Zhao et al., ICLR 2020).

Two models (the endpoints, theta_0 and theta_1) are joined by a quadratic
Bezier curve in parameter space,

    theta(t) = (1 - t)^2 theta_0 + 2 t (1 - t) theta_c + t^2 theta_1,

t in [0, 1], whose control point theta_c is trained on the defender's
clean data to minimise the loss along the curve, E_t CE(f(x; theta(t)), y).
Models on the curve away from the endpoints keep the clean accuracy but
tend to lose what the endpoints learned from few examples, such as a
backdoor watermark. The defence returns the model at one t.

jaxwm's choices (:class:`McrConfig`): the endpoints are two fine-tunings
of the suspect model on the clean data (all layers, learning rate 0.01,
10 epochs, different data orders); theta_c starts at the endpoints'
midpoint and is trained 20 epochs at learning rate 0.01 (constant). The
expectation over t is taken by a midpoint rule: each batch is cut into P
equal slices (P = 4) and slice j is evaluated at t_j = (j + 1/2) / P.
Batch statistics along the curve: the training uses each slice's own; a
model at an interior t re-estimates its running statistics on the clean
data (5 epochs of running averages, parameters frozen), while the
endpoints keep theirs, so that t = 0 and t = 1 are the endpoints exactly.

The control point is trained by the engine (:func:`jaxwm.train.
make_train_step` and :func:`jaxwm.train.loop.fit`) on a Flax module
(:class:`BezierCurveModel`) whose only parameter is theta_c.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.config_checks import raise_problems
from jaxwm.config_checks.core import require_integer
from jaxwm.config_checks.training import training
from jaxwm.data.dataset import Dataset
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import repair_engine
from jaxwm.train import loop
from jaxwm.train import optim
from jaxwm.train import recipe
from jaxwm.train import step as step_lib
from jaxwm.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class McrConfig:
  """MCR's settings.

  Attributes:
    t: where on the curve the repaired model lies, in [0, 1].
    endpoints: the fine-tuning that makes each endpoint from the model.
    learning_rate: the control point's constant learning rate.
    num_epochs: the control point's epochs over the clean data.
    curve_points: P, the points t_j = (j + 1/2) / P evaluated per batch;
      the batch size must be a multiple of P.
    batch_stat_epochs: epochs of running averages that re-estimate the
      batch statistics of a model at an interior t.
  """

  t: float = 0.5
  endpoints: fine_tuning.FineTuneConfig = fine_tuning.FineTuneConfig(
      layers=fine_tuning.ALL, learning_rate=0.01, num_epochs=10)
  learning_rate: float = 0.01
  num_epochs: int = 20
  curve_points: int = 4
  batch_stat_epochs: int = 5

  def __post_init__(self):
    check_t(self.t)
    repair_engine.check_schedule(self.learning_rate, self.num_epochs)
    for name in ("curve_points", "batch_stat_epochs"):
      require_integer(name, getattr(self, name), 1)


def check_t(t: float) -> None:
  if not 0.0 <= t <= 1.0:
    raise ValueError(f"t must be in [0, 1], got {t}.")


def bezier(start: Any, control: Any, end: Any, t: float) -> Any:
  """(1 - t)^2 start + 2 t (1 - t) control + t^2 end, leaf by leaf."""
  return jax.tree.map(
      lambda a, c, b: (1 - t)**2 * a + 2 * t * (1 - t) * c + t**2 * b,
      start, control, end)


def _lerp(start: Any, end: Any, t: float) -> Any:
  """(1 - t) start + t end, leaf by leaf."""
  return jax.tree.map(lambda a, b: (1 - t) * a + t * b, start, end)


def _midpoint(start: Any, end: Any) -> Any:
  return _lerp(start, end, 0.5)


@dataclasses.dataclass(frozen=True, eq=False)
class CurveEnds:
  """The endpoints' variables ({"params": ..., and model state}), held by
  :class:`BezierCurveModel` (compared and hashed by identity)."""

  start: dict[str, Any]
  end: dict[str, Any]


class BezierCurveModel(nn.Module):
  """The curve as a model whose only parameter is the control point.

  ``__call__(x [B, H, W, C], train)`` cuts the batch into ``len(points)``
  equal slices and returns the logits [B, K] of slice j under
  theta(points[j]) (the batch statistics of each slice in training; the
  endpoints' running statistics interpolated linearly otherwise).

  Attributes:
    apply_fn: the endpoints' ``model.apply``.
    ends: the endpoints.
    points: the t of each slice.
  """

  apply_fn: Callable[..., Any]
  ends: CurveEnds
  points: tuple[float, ...]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    start, end = self.ends.start, self.ends.end
    control = self.param("control", lambda _: _midpoint(start["params"],
                                                        end["params"]))
    if x.shape[0] % len(self.points):
      raise ValueError(
          f"a batch of {x.shape[0]} rows cannot be cut into "
          f"{len(self.points)} equal slices; use a batch size that is a "
          "multiple of curve_points.")
    logits = []
    for t, rows in zip(self.points, jnp.split(x, len(self.points))):
      state = {name: _lerp(start[name], end[name], t)
               for name in start if name != "params"}
      variables = {"params": bezier(start["params"], control, end["params"],
                                    t), **state}
      if train and state:
        out, _ = self.apply_fn(variables, rows, train=True,
                               mutable=list(state))
      else:
        out = self.apply_fn(variables, rows, train=train)
      logits.append(out)
    return jnp.concatenate(logits)


@dataclasses.dataclass(frozen=True)
class BezierCurve:
  """A trained curve between two models.

  Attributes:
    start: the model at t = 0.
    end: the model at t = 1.
    control: the trained control point (a parameter tree like the
      endpoints').
    config: the training config of the endpoints' architecture.
    clean: the clean data, for the batch statistics of interior points.
    batch_stat_epochs: epochs of running averages at an interior point.
    stream: the engine's key stream of those runs.
  """

  start: recipe.TrainedModel
  end: recipe.TrainedModel
  control: Any
  config: Any
  clean: Dataset
  batch_stat_epochs: int = 5
  stream: int = 0

  def variables_at(self, t: float) -> dict[str, Any]:
    """theta(t), with the endpoints' model state interpolated linearly."""
    check_t(t)
    start, end = self.start.variables, self.end.variables
    return {name: (bezier(start[name], self.control, end[name], t)
                   if name == "params" else _lerp(start[name], end[name], t))
            for name in start}

  def at(self, t: float) -> recipe.TrainedModel:
    """The model at ``t`` (same class and interface as the endpoints).

    At t = 0 and t = 1 the endpoints' variables exactly; elsewhere the
    running batch statistics (if any) are re-estimated on the clean data.
    """
    variables = self.variables_at(t)
    model = repair_engine.with_variables(self.start, variables)
    if t in (0.0, 1.0) or len(variables) == 1:
      return model
    return recipe.train_model(
        repair_engine.repair_recipe(self.config, 1.0,
                                    self.batch_stat_epochs),
        self.clean, stream=self.stream, init_variables=variables,
        trainable=lambda path: False,
        input_transform=repair_engine.no_transform)


def fit_curve(config, start: recipe.TrainedModel, end: recipe.TrainedModel,
              clean: Dataset, settings: McrConfig = McrConfig(), *,
              stream: int = 0) -> BezierCurve:
  """Trains the control point of the curve from ``start`` to ``end``.

  Args:
    config: the endpoints' training config (``configs/train.py`` fields);
      ``config.train`` gives the optimizer, batch size, weight decay and
      augmentation, with ``settings``' constant learning rate and epochs.
    start, end: models of one architecture.
    clean: the defender's clean data.
    settings: MCR's settings.
    stream: the engine's key stream (data order, augmentation).
  """
  config = repair_engine.repair_recipe(config, settings.learning_rate,
                                       settings.num_epochs)
  raise_problems(training(config))
  recipe_config = config.train
  if recipe_config.batch_size % settings.curve_points:
    raise ValueError(
        f"batch size {recipe_config.batch_size} is not a multiple of "
        f"curve_points = {settings.curve_points}; change either.")
  points = tuple((j + 0.5) / settings.curve_points
                 for j in range(settings.curve_points))
  ends = CurveEnds(jax.device_get(start.variables),
                   jax.device_get(end.variables))
  curve_model = BezierCurveModel(start.model.apply, ends, points)
  steps_per_epoch = max(1, len(clean) // recipe_config.batch_size)
  optimizer = optim.make_optimizer(recipe_config, steps_per_epoch,
                                   settings.num_epochs)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)
  params = {"control": jax.tree.map(
      jnp.asarray, _midpoint(ends.start["params"], ends.end["params"]))}
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     model_state={}, opt_state=optimizer.init(params),
                     rng=jax.random.fold_in(key, 0))
  step_fn = step_lib.make_train_step(
      curve_model, optimizer, mesh=start.mesh,
      input_transform=recipe.input_transform_from_config(
          recipe_config.augment))
  state = loop.fit(
      step_fn, state, clean, batch_size=recipe_config.batch_size,
      num_epochs=settings.num_epochs, data_rng=jax.random.fold_in(key, 1),
      mesh=start.mesh, log_every_steps=recipe_config.log_every_steps,
      learning_rate=optim.schedule_from_config(
          recipe_config, steps_per_epoch, settings.num_epochs))
  return BezierCurve(start, end, jax.device_get(state.params["control"]),
                     config, clean, settings.batch_stat_epochs, stream)


def fine_tuned_curve(config, model: recipe.TrainedModel, clean: Dataset,
                     settings: McrConfig = McrConfig(), *,
                     workdir: str | None = None,
                     stream: int = 0) -> BezierCurve:
  """Fine-tunes two endpoints from ``model`` and trains the curve between
  them (MCR before its choice of t).

  Args:
    config: the model's training config (``configs/train.py`` fields).
    model: the suspect model.
    clean: the defender's clean data.
    settings: MCR's settings.
    workdir: checkpoint folder of the endpoints' fine-tunings (in
      ``workdir/start`` and ``workdir/end``); None: no checkpoints. The
      curve itself is not checkpointed.
    stream: the key stream of the first endpoint and the curve; the second
      endpoint uses ``stream + 1``.
  """
  ends = [fine_tuning.repair(
      config, model, clean, settings.endpoints, stream=stream + offset,
      workdir=None if workdir is None else os.path.join(workdir, name))
          for offset, name in enumerate(("start", "end"))]
  return fit_curve(config, *ends, clean, settings, stream=stream)


def repair(config, model: recipe.TrainedModel, clean: Dataset,
           settings: McrConfig = McrConfig(), *,
           workdir: str | None = None,
           stream: int = 0) -> recipe.TrainedModel:
  """Runs MCR on ``model``: the model at ``settings.t`` on the
  :func:`fine_tuned_curve` (same arguments)."""
  return fine_tuned_curve(config, model, clean, settings, workdir=workdir,
                          stream=stream).at(settings.t)
