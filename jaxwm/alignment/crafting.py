"""The crafting loop shared by every gradient-alignment poison in jaxwm.

Fowl et al., Appendix A.1 (Algorithm 1), with the machinery of the
gradient-matching attacks it adapts (restarts, signed Adam, differentiable
augmentation) and the bi-level rounds of UBW-C and Sleeper Agent (UBW paper,
Appendix B):

1. For each of ``restarts`` trials, draw delta ~ U[-eps, eps] (projected).
2. For ``steps`` steps: for every batch of perturbed samples, evaluate the
   objective (:mod:`jaxwm.alignment.objective`) on aug(x + delta) at the
   surrogate and its derivative in delta (with an ensemble of K surrogates,
   step s uses surrogate s mod K and its own target gradient); then take
   one Adam step on sign(d objective / d delta) for all samples at once
   (:func:`signed_adam`), the learning rate multiplied by ``gamma`` at each
   milestone (fractions of ``steps``), and project delta onto the l_inf
   ball of radius eps and onto the image box, x + delta in [0, 1].
3. Every ``retrain_every`` steps (bi-level rounds), retrain the surrogate
   from scratch on the current poisoned set and recompute the target
   gradient.
4. Keep the trial whose last step had the lowest objective.

The loop stops with :class:`NonFiniteCraftingError` when a target gradient
contains NaN or inf (checked once per target, before any step uses it) or
when a step's objective or perturbations do (tracked on the device, step by
step, and read back where the loop waits for the device anyway: at each
progress line, checkpoint, ``on_step`` call and trial end). The error names
the trial and the first bad step, and no checkpoint holds a non-finite
state.

The crafting step on one batch (the objective, its derivative in delta, the
signed-Adam update and the projection) is one jit-compiled function
(:func:`make_craft_step`); a step over all perturbed samples dispatches it
once per batch, without waiting for the device. The perturbed samples, their
deltas and Adam moments live on the devices as [num_batches, B, H, W, C]
arrays split along ``"data"`` like training batches and updated in place
(each batch has its own Optax state: :func:`initial_optimizer_state`); the
surrogate and the target gradient are replicated. With a
``workdir`` the loop state (delta, Adam state, best trial, surrogate) is
checkpointed with :class:`jaxwm.train.Checkpointer`, and a killed run
resumes where it stopped and ends with the same poisons; the folder keeps
the run's identity (:func:`run_identity`), checked before a resume.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from jaxwm import identity
from jaxwm.alignment import objective
from jaxwm.alignment.regularizers import Regularizers
from jaxwm.data import augment as augment_lib
from jaxwm.data.dataset import Dataset
from jaxwm.fingerprint import array_digest, callable_identity, tree_digest
from jaxwm.train import compiler, dispatch, sharding
from jaxwm.train.checkpoint import Checkpointer
from jaxwm.train.step import to_float_images

OBJECTIVES = ("alignment", "gradient_norm")
# Adam's constants (the defaults of Kingma & Ba, and of the reference code).
ADAM_B1 = 0.9
ADAM_B2 = 0.999
ADAM_EPS = 1e-8
# (restart, round, poisoned uint8 images [M, H, W, C]) -> surrogate variables.
RetrainFn = Callable[[int, int, np.ndarray], Any]
# (the poisoned training set, a tag naming the round) -> surrogate variables.
RetrainSurrogate = Callable[[Dataset, str], Any]
# (restart, step, objective) after every step; for progress and tests.
StepCallback = Callable[[int, int, float], None]


class NonFiniteCraftingError(FloatingPointError):
  """A target gradient, an objective or the perturbations became NaN or
  inf while crafting."""


@dataclasses.dataclass(frozen=True)
class CraftConfig:
  """Hyper-parameters of the crafting loop (defaults: Fowl et al., Sec. 3.1).

  Attributes:
    epsilon: l_inf radius of delta in pixel units of [0, 1] (8/255, 16/255).
    steps: signed-Adam steps per restart (240).
    restarts: independent trials; the best is kept (8).
    learning_rate: Adam step size in pixel units (0.025 = the reference's
      0.1 in input-standardised units, as jaxwm models divide by 0.25).
    milestones: fractions of ``steps`` at which the rate is multiplied by
      ``gamma`` (3/8, 5/8, 7/8).
    gamma: the decay factor.
    batch_size: perturbed samples per batch of the objective.
    augment: differentiable augmentation applied to x + delta while
      crafting (shift and flip, as in training).
    objective: ``"alignment"`` (Eq. 3) or ``"gradient_norm"`` (TensorClog).
    independent: detach the denominator of Eq. 3 (Appendix A.7).
    regularizers: visibility penalties (Appendix A.8).
    retrain_every: retrain the surrogate every this many steps (bi-level
      rounds of UBW-C and Sleeper Agent); 0 never.
    checkpoint_every: checkpoint every this many steps (and after each
      restart) when a workdir is given.
    log_every: progress line interval in steps.
  """

  epsilon: float
  steps: int = 240
  restarts: int = 8
  learning_rate: float = 0.025
  milestones: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
  gamma: float = 0.1
  batch_size: int = 128
  augment: augment_lib.AugmentConfig = augment_lib.AugmentConfig(
      shift=2, flip=True)
  objective: str = "alignment"
  independent: bool = False
  regularizers: Regularizers = Regularizers()
  retrain_every: int = 0
  checkpoint_every: int = 10
  log_every: int = 10

  def __post_init__(self):
    if not 0.0 < self.epsilon <= 1.0:
      raise ValueError(
          f"epsilon={self.epsilon} must be in (0, 1] (pixel units: 8/255 is "
          f"{8 / 255:.4f}).")
    if self.steps < 1 or self.restarts < 1 or self.batch_size < 1:
      raise ValueError(
          f"steps={self.steps}, restarts={self.restarts} and batch_size="
          f"{self.batch_size} must all be >= 1.")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"objective {self.objective!r} is unknown; use one of "
                       f"{OBJECTIVES}.")
    if any(not 0.0 < m < 1.0 for m in self.milestones):
      raise ValueError(f"milestones {self.milestones} must be fractions of "
                       "the steps, in (0, 1).")
    if self.retrain_every < 0 or self.checkpoint_every < 1:
      raise ValueError(
          f"retrain_every={self.retrain_every} must be >= 0 and "
          f"checkpoint_every={self.checkpoint_every} >= 1.")
    object.__setattr__(self, "milestones", tuple(self.milestones))

  def schedule(self) -> optax.Schedule:
    """The step-decay learning-rate schedule of the signed Adam."""
    return optax.piecewise_constant_schedule(
        self.learning_rate,
        {max(1, int(m * self.steps)): self.gamma for m in self.milestones})


@flax.struct.dataclass
class CraftState:
  """Everything the crafting loop carries from one step to the next.

  Attributes:
    restart: int32 scalar, the current trial.
    step: int32 scalar, steps done in the current trial.
    round: int32 scalar, the bi-level round the surrogate belongs to.
    delta: float32 [num_batches, B, H, W, C], the current perturbations.
    opt_state: the :func:`signed_adam` state of every batch of delta
      (:func:`initial_optimizer_state`).
    loss: float32 scalar, the objective at the trial's last step.
    best_delta: float32 like delta, the best finished trial so far.
    best_loss: float32 scalar, its objective (+inf before any).
    variables: the surrogate's variables for the current round.
  """

  restart: jax.Array
  step: jax.Array
  round: jax.Array
  delta: jax.Array
  opt_state: Any
  loss: jax.Array
  best_delta: jax.Array
  best_loss: jax.Array
  variables: Any


@dataclasses.dataclass(frozen=True)
class CraftResult:
  """The crafted perturbations.

  Attributes:
    delta: float32 [M, H, W, C], the best trial's perturbations; x + delta
      is in [0, 1] and |delta| <= epsilon.
    loss: the best trial's objective at its last step.
  """

  delta: np.ndarray
  loss: float


def signed_adam(learning_rate: float | jax.Array
                ) -> optax.GradientTransformation:
  """Adam over the sign of the gradient, the gradient-matching attacks'
  optimiser: sign(g), then Adam's moments and bias correction with Kingma &
  Ba's constants (eps outside the square root), then a step of
  ``-learning_rate``.

  Args:
    learning_rate: the step size of this step (a float, or a traced scalar
      from the schedule :meth:`CraftConfig.schedule`); the state does not
      depend on it.
  """
  return optax.chain(
      optax.scale_by_sign(),
      optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS),
      optax.scale_by_learning_rate(learning_rate))


def initial_optimizer_state(delta: jax.Array) -> Any:
  """A fresh :func:`signed_adam` state for each batch of ``delta``.

  Args:
    delta: float32 [num_batches, B, H, W, C].

  Returns:
    The Optax state stacked over batches: moments like ``delta`` and a step
    count int32 [num_batches] (each batch takes one step per crafting step).
  """
  return jax.vmap(signed_adam(0.0).init)(delta)


def _optimizer_state_sharding(mesh: Mesh) -> Any:
  """The shardings of :func:`initial_optimizer_state`: the moments split
  like the deltas, the per-batch counts replicated."""
  shapes = jax.eval_shape(initial_optimizer_state,
                          jax.ShapeDtypeStruct((1,) * 5, jnp.float32))
  spread = objective.stacked_batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  return jax.tree.map(lambda leaf: spread if leaf.ndim > 1 else rep, shapes)


def project(delta: jax.Array, images: jax.Array, epsilon: float) -> jax.Array:
  """Projects onto |delta| <= epsilon and 0 <= images + delta <= 1.

  Args:
    delta: float [..., H, W, C].
    images: float in [0, 1], the same shape.
    epsilon: the l_inf radius.
  """
  delta = jnp.clip(delta, -epsilon, epsilon)
  return jnp.clip(delta, -images, 1.0 - images)


def quantize(images: np.ndarray, delta: np.ndarray,
             epsilon: float) -> np.ndarray:
  """Stores x + delta as uint8, still within the epsilon ball.

  Args:
    images: uint8 [M, H, W, C], the clean images.
    delta: float [M, H, W, C].
    epsilon: the l_inf radius in [0, 1] units.

  Returns:
    uint8 [M, H, W, C]: round(255 (x + delta)), each pixel within
    floor(255 epsilon) levels of the clean one.
  """
  levels = math.floor(255 * epsilon + 1e-6)
  clean = images.astype(np.int32)
  poisoned = np.rint((images.astype(np.float32) / 255.0 + delta) * 255.0)
  poisoned = np.clip(poisoned, clean - levels, clean + levels)
  return np.clip(poisoned, 0, 255).astype(np.uint8)


def make_craft_step(model, config: CraftConfig, mesh: Mesh | None = None):
  """The compiled crafting step on one batch of perturbed samples.

  Returns:
    ``step(carry, index, learning_rate, variables, target_grad, images,
    labels, weights, key) -> (carry, objective)``. ``carry`` is (delta,
    opt_state): delta float32 [num_batches, B, H, W, C] and its
    :func:`initial_optimizer_state`; ``images`` (uint8), ``labels`` and
    ``weights`` are [num_batches, B, ...]; all are split along ``"data"``.
    The step evaluates the objective on batch ``index`` (an int32 scalar),
    takes one :func:`signed_adam` step of size ``learning_rate`` (a float32
    scalar) on its derivative, projects, and writes the batch's rows of
    ``carry`` back in place (``carry`` is donated). ``target_grad`` is the
    target pytree (None for ``gradient_norm``); ``objective`` is the
    batch's value before the update. Adam acts element-wise and each batch
    keeps its own state, so updating one batch at a time equals one update
    of all perturbations at once.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_batch_size(config.batch_size, mesh)
  return _compiled_step(model, config.epsilon, config.augment,
                        config.objective, config.independent,
                        config.regularizers, mesh)


@functools.lru_cache(maxsize=32)
def _compiled_step(model, epsilon: float,
                   augment: augment_lib.AugmentConfig, objective_name: str,
                   independent: bool, regularizers: Regularizers, mesh: Mesh):
  """The step of :func:`make_craft_step`, compiled once per setting (the
  learning rate and batch index are arguments and Adam's step count is in
  the carried state, so trials and runs that differ only in those share
  it)."""
  augmented = augment != augment_lib.AugmentConfig()

  def objective_of(grad, target_grad):
    if objective_name == "alignment":
      return objective.alignment_loss(grad, target_grad, independent)
    return objective.gradient_norm_loss(grad)

  def step(carry, index, learning_rate, variables, target_grad, images,
           labels, weights, key):
    delta_all, opt_state_all = carry
    take = lambda a: jax.lax.dynamic_index_in_dim(a, index, keepdims=False)
    delta, opt_state = take(delta_all), jax.tree.map(take, opt_state_all)
    clean = to_float_images(take(images))
    transform = (lambda x: augment.apply(x, key)) if augmented else None
    value, grad = objective.crafting_gradient(
        model, variables, clean, delta, take(labels), take(weights),
        lambda g: objective_of(g, target_grad), transform)
    grad += jax.grad(lambda d: regularizers(clean, d))(delta)
    updates, opt_state = signed_adam(learning_rate).update(grad, opt_state)
    delta = project(optax.apply_updates(delta, updates), clean, epsilon)
    put = lambda a, rows: jax.lax.dynamic_update_index_in_dim(a, rows, index,
                                                              0)
    return (put(delta_all, delta),
            jax.tree.map(put, opt_state_all, opt_state)), value

  spread = objective.stacked_batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  carry = (spread, _optimizer_state_sharding(mesh))
  return compiler.jit(
      step,
      in_shardings=(carry, rep, rep, rep, rep, spread, spread, spread, rep),
      out_shardings=(carry, rep),
      donate_argnums=0)


def retrain_on_dataset(dataset: Dataset, rows: np.ndarray,
                       retrain_surrogate: RetrainSurrogate | None
                       ) -> RetrainFn | None:
  """The :func:`craft` ``retrain`` for poisons of ``dataset``'s ``rows``.

  Args:
    dataset: the clean training set.
    rows: int [M], the rows of ``dataset`` that :func:`craft` perturbs.
    retrain_surrogate: trains a surrogate from scratch on a poisoned copy of
      ``dataset`` (tagged ``surrogate_trial{restart}_round{round}``); None
      for no bi-level rounds.

  Returns:
    A ``RetrainFn`` that writes the M poisoned images into a copy of
    ``dataset`` and retrains on it, or None without ``retrain_surrogate``.
  """
  if retrain_surrogate is None:
    return None

  def retrain(restart: int, round_: int, poisoned: np.ndarray) -> Any:
    images = dataset.images.copy()
    images[rows] = poisoned
    return retrain_surrogate(dataset.replace(images=images),
                             f"surrogate_trial{restart}_round{round_}")

  return retrain


@functools.partial(jax.jit, static_argnames="epsilon")
def _initial_delta(key: jax.Array, images: jax.Array,
                   epsilon: float) -> jax.Array:
  """delta ~ U[-epsilon, epsilon], projected, shaped like ``images``."""
  delta = jax.random.uniform(key, images.shape, jnp.float32, -epsilon,
                             epsilon)
  return project(delta, to_float_images(images), epsilon)


def _rows(batched: jax.Array, count: int) -> np.ndarray:
  """[num_batches, B, ...] on device -> the first ``count`` rows on the host."""
  array = np.asarray(jax.device_get(batched))
  return array.reshape(-1, *array.shape[2:])[:count]


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  """bool scalar: whether every leaf of ``tree`` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf))
                            for leaf in jax.tree.leaves(tree)]))


@jax.jit
def _first_bad_step(first_bad: jax.Array, step: jax.Array, loss: jax.Array,
                    delta: jax.Array) -> jax.Array:
  """int32 scalar: ``first_bad`` if it is set (> 0), else ``step`` if the
  step's objective ``loss`` or perturbations ``delta`` are not finite, else
  0."""
  finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(delta))
  return jnp.where((first_bad == 0) & ~finite, step, first_bad)


def _model_state(variables: Any) -> dict[str, Any]:
  return {k: v for k, v in variables.items() if k != "params"}


# Fields of CraftConfig that do not change the crafted perturbations.
_BOOKKEEPING = ("checkpoint_every", "log_every")


def run_identity(config: CraftConfig, key: jax.Array, images: np.ndarray,
                 labels: np.ndarray, members: list[Any],
                 target: objective.Target | None) -> dict[str, Any]:
  """Everything that determines a :func:`craft` run, as a JSON-able record.

  The code versions, the settings of ``config`` (but its checkpoint and log
  intervals), and SHA-256 digests of the key, the samples to perturb and
  their labels, each surrogate's variables and the target
  (:func:`jaxwm.fingerprint.callable_identity`: its target set and loss).
  The bi-level ``retrain`` function is not part of it: the surrogates it
  trains keep identity records of their own.
  """
  settings = {name: value
              for name, value in dataclasses.asdict(config).items()
              if name not in _BOOKKEEPING}
  return identity.canonical({
      **identity.code_versions(), "config": settings,
      "key": array_digest(key), "images": array_digest(images),
      "labels": array_digest(labels), "num_poisons": len(images),
      "surrogates": [tree_digest(member) for member in members],
      "target": callable_identity(target)})


def _checkpointer(workdir: str, record: dict[str, Any]) -> Checkpointer:
  """A Checkpointer for ``workdir``, after checking that any run already
  there has the identity ``record`` (kept in ``crafting_run.json``)."""
  path = os.path.join(workdir, "crafting_run.json")
  if os.path.exists(path) or os.path.isdir(os.path.join(workdir,
                                                        "checkpoints")):
    saved = None
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f).get("identity")
    identity.check(saved, record, what="the crafting run", folder=workdir)
  else:
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump({"identity": record}, f, sort_keys=True, indent=1)
    os.replace(path + ".tmp", path)
  return Checkpointer(workdir)


def craft(model, variables: Any, images: np.ndarray, labels: np.ndarray,
          target: objective.Target | None, config: CraftConfig,
          key: jax.Array, *, workdir: str | None = None,
          retrain: RetrainFn | None = None, mesh: Mesh | None = None,
          on_step: StepCallback | None = None) -> CraftResult:
  """Crafts perturbations for ``images`` (Fowl et al., Algorithm 1).

  Args:
    model: the surrogate's architecture (a jaxwm model).
    variables: the surrogate trained on clean data (round 0 of every trial),
      or a list of K surrogates of that architecture to align against in
      turn (an ensemble, e.g. checkpoints along one surrogate's training:
      step s uses member s mod K, so a step costs what it costs with one;
      not with bi-level rounds).
    images: uint8 [M, H, W, C], the samples to perturb.
    labels: int [M], their (clean) labels.
    target: builds the target gradient from the surrogate; None for the
      ``gradient_norm`` objective.
    config: the loop's hyper-parameters.
    key: jax.random key; trial r draws its initial delta from
      ``fold_in(fold_in(key, r), 0)`` and batch b of step s its
      augmentation from ``fold_in(fold_in(fold_in(key, r), s + 1), b)``.
    workdir: checkpoint folder; a rerun with the same folder resumes when
      its :func:`run_identity` is the same, and raises
      :class:`jaxwm.identity.StaleRunError` naming the differing fields
      otherwise (also for a folder crafted before identity records).
    retrain: the bi-level lower level, required when
      ``config.retrain_every`` > 0: given (trial, round, the M poisoned
      uint8 images), the surrogate retrained from scratch.
    mesh: device mesh; default all devices.
    on_step: called after every step with (trial, steps done, objective).

  Returns:
    The best trial's perturbations.

  Raises:
    NonFiniteCraftingError: a target gradient, or a step's objective or
      perturbations, contains NaN or inf; the message names the trial and
      the first such step.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
    raise ValueError(
        f"images must be uint8 [M, H, W, C] with M >= 1, got {images.dtype} "
        f"{images.shape}; pass Dataset.images rows.")
  if (target is None) != (config.objective == "gradient_norm"):
    raise ValueError(
        f"objective {config.objective!r} needs a target exactly when it is "
        "'alignment'; pass target=None for 'gradient_norm' only.")
  if config.retrain_every and retrain is None:
    raise ValueError(
        f"retrain_every={config.retrain_every} needs a retrain function; "
        "pass retrain= or set retrain_every=0.")
  members = list(variables) if isinstance(variables, (list, tuple)) else [
      variables]
  if not members or (len(members) > 1 and config.retrain_every):
    raise ValueError(
        f"an ensemble of {len(members)} surrogates needs at least one member "
        f"and no bi-level rounds (retrain_every={config.retrain_every}); "
        "pass one surrogate to retrain, or set retrain_every=0.")
  count = images.shape[0]
  spread = objective.stacked_batch_sharding(mesh)
  opt_state_sharding = _optimizer_state_sharding(mesh)
  batched = jax.device_put(
      (objective.pad_to_batches(images, config.batch_size),
       objective.pad_to_batches(np.asarray(labels, np.int32),
                                config.batch_size),
       objective.batch_weights(count, config.batch_size)), spread)
  step_fn = make_craft_step(model, config, mesh)
  schedule = config.schedule()
  num_batches = batched[0].shape[0]
  members = [sharding.replicate(member, mesh) for member in members]
  initial_variables = members[0]

  def new_trial(restart: int, best_delta, best_loss) -> CraftState:
    delta = jax.device_put(_initial_delta(
        jax.random.fold_in(jax.random.fold_in(key, restart), 0), batched[0],
        config.epsilon), spread)
    return CraftState(
        restart=jnp.int32(restart), step=jnp.int32(0), round=jnp.int32(0),
        delta=delta, opt_state=jax.device_put(
            initial_optimizer_state(delta), opt_state_sharding),
        loss=jnp.float32(np.inf),
        best_delta=best_delta, best_loss=best_loss,
        variables=initial_variables)

  state = new_trial(0, jax.device_put(jnp.zeros(batched[0].shape), spread),
                    jnp.float32(np.inf))
  checkpointer = None
  if workdir:
    record = run_identity(config, key, images, labels, members, target)
    checkpointer = _checkpointer(workdir, record)
    if checkpointer.latest_step() is not None:
      state, _ = checkpointer.restore(checkpointer.latest_step(), state)

  def save(state: CraftState) -> None:
    if checkpointer is not None:
      checkpointer.save(int(state.restart) * config.steps + int(state.step),
                        state, {"identity": record})

  def trial_name(restart: int) -> str:
    return f"crafting trial {restart + 1}/{config.restarts}"

  def new_target(restart: int, step: int, round_: int, member: int,
                 surrogate) -> Any:
    if target is None:
      return None
    grad = target(surrogate["params"], _model_state(surrogate))
    if not bool(_all_finite(grad)):
      raise NonFiniteCraftingError(
          f"{trial_name(restart)}: the target gradient for step {step + 1}/"
          f"{config.steps} (surrogate round {round_}, ensemble "
          f"member {member}) contains NaN or inf, so no step can align with "
          "it; check that the surrogate's logits and the target loss are "
          "finite on the target set.")
    return grad

  def check_steps(restart: int, first_bad: jax.Array, step: int) -> None:
    bad = int(first_bad)
    if bad:
      raise NonFiniteCraftingError(
          f"{trial_name(restart)}: the objective or the perturbations became "
          f"NaN or inf at step {bad}/{config.steps} (found at step {step}); "
          "check the surrogate and the target loss for overflow, or lower "
          "the learning rate.")

  try:
    while int(state.restart) < config.restarts:
      restart = int(state.restart)
      trial_key = jax.random.fold_in(key, restart)
      target_grads = {}  # member -> its target gradient
      first_bad = jnp.int32(0)  # the trial's first non-finite step, 0: none
      in_flight = dispatch.DispatchWindow()
      for step in range(int(state.step), config.steps):
        if config.retrain_every and step % config.retrain_every == 0 and (
            int(state.round) < step // config.retrain_every):
          round_ = step // config.retrain_every
          poisoned = quantize(images, _rows(state.delta, count),
                              config.epsilon)
          state = state.replace(
              round=jnp.int32(round_),
              variables=sharding.replicate(
                  retrain(restart, round_, poisoned), mesh))
          target_grads = {}
        member = step % len(members)
        surrogate = members[member] if len(members) > 1 else state.variables
        if member not in target_grads:
          target_grads[member] = new_target(restart, step, int(state.round),
                                            member, surrogate)
        carry = (state.delta, state.opt_state)
        step_key = jax.random.fold_in(trial_key, step + 1)
        learning_rate = jnp.float32(schedule(step))
        objectives = []
        for index in range(num_batches):
          carry, batch_objective = step_fn(
              carry, jnp.int32(index), learning_rate,
              surrogate, target_grads[member], *batched,
              jax.random.fold_in(step_key, index))
          objectives.append(batch_objective)
          in_flight.push(batch_objective)
        loss = jnp.mean(jnp.stack(objectives))
        state = state.replace(delta=carry[0], opt_state=carry[1],
                              step=jnp.int32(step + 1), loss=loss)
        first_bad = _first_bad_step(first_bad, jnp.int32(step + 1), loss,
                                    carry[0])
        logs = (step + 1) % config.log_every == 0
        saves = (step + 1) % config.checkpoint_every == 0 and (
            step + 1 < config.steps) and checkpointer is not None
        if on_step is not None or logs or saves:
          check_steps(restart, first_bad, step + 1)
        if on_step is not None:
          on_step(restart, step + 1, float(loss))
        if logs:
          logging.info("crafting trial %d/%d step %d/%d  objective %.4f",
                       restart + 1, config.restarts, step + 1, config.steps,
                       float(loss))
        if saves:
          save(state)
      check_steps(restart, first_bad, int(state.step))
      if float(state.loss) < float(state.best_loss):
        state = state.replace(best_delta=state.delta, best_loss=state.loss)
      logging.info("crafting trial %d/%d done: objective %.4f (best %.4f)",
                   restart + 1, config.restarts, float(state.loss),
                   float(state.best_loss))
      if restart + 1 < config.restarts:
        state = new_trial(restart + 1, state.best_delta, state.best_loss)
      else:
        state = state.replace(restart=jnp.int32(restart + 1),
                              step=jnp.int32(0))
      save(state)
  finally:
    if checkpointer is not None:
      checkpointer.close()
  return CraftResult(delta=_rows(state.best_delta, count),
                     loss=float(state.best_loss))
