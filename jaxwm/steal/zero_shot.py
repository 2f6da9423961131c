"""Zero-shot model stealing: data-free adversarial distillation (DFAD).

Fang et al. (2019), "Data-Free Adversarial Distillation", the zero-shot
attack of model-accessible thieves: the student never sees a real image.
A generator G maps Gaussian noise z to images; the victim V and the student
S answer with logits, and the two play

    min_S max_G  E_z mean |S(G(z)) - V(G(z))|         (L1 on the logits)

in alternation: ``student_steps`` student updates on fresh generated
batches labelled by the victim's logits, then one generator update that
back-propagates the disagreement through both frozen networks (V's weights
are needed for it: the attack is white-box).

Both updates use the training engine's parts. The student's is the
engine's own step (:func:`jaxwm.train.make_train_step`) with the L1 loss
:func:`jaxwm.steal.losses.l1_to_victim_logits` on batches whose
``"label"`` is the victim's logits. The generator's
(:func:`make_generator_step`) differentiates through two networks it does
not train, which the engine's step (a model trained on its own inputs)
cannot express; it is built here from the engine's
:class:`~jaxwm.train.state.TrainState`, optimizer and sharding,
data-parallel like the engine's step. The outer loop alternates the two;
there is no dataset for :func:`jaxwm.train.fit` to iterate.

Victim queries: every generated image the victim answers, ``iterations x
(student_steps + 1) x batch_size`` in all.

The official code's settings (MNIST: batch 512, 40 x 50 generator
iterations, student SGD at 0.01; CIFAR-10: batch 256, 500 x 50, SGD at
0.1; generator Adam at 1e-3, 5 student steps per generator step, noise of
100 or 256 dimensions, generator width 64) are scaled down for a CPU in
:class:`ZeroShotConfig`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from jaxwm import identity as identity_lib
from jaxwm.fingerprint import tree_digest
from jaxwm.models import common
from jaxwm.steal import losses as steal_losses
from jaxwm.steal.student import check_positive, num_classes, StudentRecipe
from jaxwm.train import dispatch, loop, optim, recipe, sharding
from jaxwm.train import step as step_lib
from jaxwm.train.checkpoint import Checkpointer
from jaxwm.train.state import TrainState, create_train_state

# Settings that do not change the stolen model.
_BOOKKEEPING = ("log_every", "checkpoint_every")


@dataclasses.dataclass(frozen=True)
class ZeroShotConfig:
  """DFAD's settings (defaults: scaled to Fashion-MNIST on a CPU).

  Attributes:
    iterations: generator updates; the query budget is ``iterations x
      (student_steps + 1) x batch_size`` (the default: 1,500 x 6 x 128 =
      1,152,000 queries). The official code runs 2,000 (MNIST) and 25,000
      (CIFAR-10).
    student_steps: student updates per generator update (5, as the
      official code).
    batch_size: generated images per update (official: 512 MNIST, 256
      CIFAR-10), a multiple of the devices.
    noise_dim: dimension of the generator's Gaussian input (official: 100
      MNIST, 256 CIFAR-10).
    generator_width: the generator's base channel count (official: 64).
    generator_learning_rate: Adam's learning rate for the generator
      (official: 1e-3).
    student_learning_rate: the student's peak learning rate (0.1, the
      paper's and the official CIFAR-10 code's; MNIST: 0.01), on the
      schedule, optimizer and weight decay of the victim's recipe
      (``config.train``), stretched over all ``iterations x student_steps``
      student updates.
    model: the student's architecture; None: the victim's
      (:class:`jaxwm.steal.student.StudentRecipe`).
    model_kwargs: its keyword arguments (see StudentRecipe).
    log_every: iterations between progress lines (each syncs the host).
    checkpoint_every: iterations between checkpoints when a workdir is
      given.
  """

  iterations: int = 1500
  student_steps: int = 5
  batch_size: int = 128
  noise_dim: int = 100
  generator_width: int = 32
  generator_learning_rate: float = 1e-3
  student_learning_rate: float = 0.1
  model: str | None = None
  model_kwargs: Mapping[str, Any] | None = None
  log_every: int = 100
  checkpoint_every: int = 500

  def __post_init__(self):
    for name in ("iterations", "student_steps", "batch_size", "noise_dim",
                 "generator_width", "log_every", "checkpoint_every"):
      check_positive(name, getattr(self, name), integer=True)
    check_positive("generator_learning_rate", self.generator_learning_rate)
    check_positive("student_learning_rate", self.student_learning_rate)
    if self.model_kwargs is not None:
      object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

  @property
  def queries(self) -> int:
    """The victim queries of a full run."""
    return self.iterations * (self.student_steps + 1) * self.batch_size

  def student_config(self, config):
    """The victim's ``config`` with the student's architecture and rate."""
    return StudentRecipe(
        model=self.model, model_kwargs=self.model_kwargs,
        learning_rate=self.student_learning_rate).config(config)


def _upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 of [B, H, W, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Generator(nn.Module):
  """DFAD's generator ("GeneratorA" of the official code), any image size.

  Dense -> BN -> x2 -> conv-BN-LeakyReLU(0.2) -> x2 -> conv-BN-LeakyReLU
  -> conv -> tanh -> BN without scale or bias. The last normalisation
  standardises each channel over the batch, so the images are what a
  normalised classifier's first layer expects; they are returned on the
  jaxwm models' input scale (``INPUT_MEAN + INPUT_STD * x``, which
  :func:`jaxwm.models.common.normalize` maps back to ``x``), not clipped
  to [0, 1].

  Input z float [B, noise_dim]; output float32 [B, H, W, C] (built at
  ceil(H/4) x 4 and cropped).
  """

  image_shape: tuple[int, int, int]
  width: int = 32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    height, width, channels = self.image_shape
    rows, cols = -(-height // 4), -(-width // 4)
    x = nn.Dense(2 * self.width * rows * cols)(z)
    x = x.reshape(z.shape[0], rows, cols, 2 * self.width)
    x = _upsample(common.batch_norm(train, jnp.float32)(x))
    x = nn.Conv(2 * self.width, (3, 3))(x)
    x = nn.leaky_relu(common.batch_norm(train, jnp.float32)(x), 0.2)
    x = _upsample(x)
    x = nn.Conv(self.width, (3, 3))(x)
    x = nn.leaky_relu(common.batch_norm(train, jnp.float32)(x), 0.2)
    x = jnp.tanh(nn.Conv(channels, (3, 3))(x))
    x = nn.BatchNorm(use_running_average=not train, use_scale=False,
                     use_bias=False, momentum=0.9, epsilon=1e-5)(x)
    x = x[:, :height, :width]
    return common.INPUT_MEAN + common.INPUT_STD * x


def noise(rng: jax.Array, batch_size: int, noise_dim: int) -> jax.Array:
  """The generator's input: standard normal float32 [batch_size, noise_dim]."""
  return jax.random.normal(rng, (batch_size, noise_dim), jnp.float32)


def generate(generator: Generator, variables: Any, z: jax.Array
             ) -> tuple[jax.Array, Any]:
  """(images [B, H, W, C], updated batch statistics) for noise z [B, D].

  The generator always normalises with the batch's statistics, as the
  official code keeps it in training mode throughout.
  """
  images, updates = generator.apply(variables, z, train=True,
                                    mutable=["batch_stats"])
  return images, updates["batch_stats"]


def disagreement(generator: Generator, student_model, victim_model,
                 generator_variables: Any, student_variables: Any,
                 victim_variables: Any, z: jax.Array
                 ) -> tuple[jax.Array, Any]:
  """(mean L1 between student and victim logits on G(z), G's new stats).

  The victim answers in inference mode; the student normalises with the
  batch's statistics (it is in training mode in the official code), its
  running statistics left as they are.
  """
  images, batch_stats = generate(generator, generator_variables, z)
  victim_logits = victim_model.apply(victim_variables, images, train=False)
  mutable = ["batch_stats"] if "batch_stats" in student_variables else False
  student_logits = student_model.apply(student_variables, images, train=True,
                                       mutable=mutable)
  if mutable:
    student_logits = student_logits[0]
  return steal_losses.mean_l1(student_logits, victim_logits), batch_stats


def make_generator_step(generator: Generator, student_model, victim_model,
                        optimizer: optax.GradientTransformation, *,
                        batch_size: int, noise_dim: int,
                        mesh: Mesh | None = None):
  """Builds ``step(state, student_vars, victim_vars, rng) -> (state,
  metrics)``: one ascent step of the generator on the disagreement.

  ``state`` is the generator's TrainState (donated); the noise is
  ``noise(rng, batch_size, noise_dim)``, split over the mesh's ``"data"``
  axis; ``metrics["disagreement"]`` is the disagreement before the update.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  rep = sharding.replicated(mesh)

  def step(state: TrainState, student_variables, victim_variables, rng):
    z = jax.lax.with_sharding_constraint(
        noise(rng, batch_size, noise_dim), sharding.batch_sharded(mesh))

    def objective(params):
      value, batch_stats = disagreement(
          generator, student_model, victim_model,
          {"params": params, **state.model_state}, student_variables,
          victim_variables, z)
      return -value, batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates),
        model_state={**state.model_state, "batch_stats": batch_stats},
        opt_state=opt_state)
    return new_state, {"disagreement": -loss}

  return jax.jit(step, in_shardings=(rep, rep, rep, rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def make_synthesiser(generator: Generator, victim_model, *, batch_size: int,
                     noise_dim: int, mesh: Mesh | None = None):
  """Builds ``synthesise(generator_vars, victim_vars, rng) -> batch``: a
  generated batch for the engine's step, ``"image"`` float32 [B, H, W, C]
  and ``"label"`` the victim's logits float32 [B, K] (B queries)."""
  mesh = sharding.make_mesh() if mesh is None else mesh

  def synthesise(generator_variables, victim_variables, rng):
    z = jax.lax.with_sharding_constraint(
        noise(rng, batch_size, noise_dim), sharding.batch_sharded(mesh))
    images, _ = generate(generator, generator_variables, z)
    return {"image": images,
            "label": victim_model.apply(victim_variables, images,
                                        train=False)}

  return jax.jit(synthesise, out_shardings=sharding.batch_sharded(mesh))


def _run_identity(config, settings: ZeroShotConfig, victim_variables,
                  image_shape, stream: int) -> dict[str, Any]:
  return identity_lib.canonical({
      **identity_lib.code_versions(), "attack": "zero_shot",
      "student": identity_lib.training_fields(config),
      "zero_shot": {name: value for name, value in
                    dataclasses.asdict(settings).items()
                    if name not in _BOOKKEEPING},
      "victim": tree_digest(victim_variables),
      "image_shape": list(image_shape), "stream": stream})


def _log_progress(iteration: int, settings: ZeroShotConfig,
                  student_l1: jax.Array, disagreement_value: jax.Array
                  ) -> None:
  """Logs the last losses (a host sync); raises
  :class:`jaxwm.train.TrainingDivergedError` if one is not finite."""
  student_l1, disagreement_value = (
      float(v) for v in jax.device_get((student_l1, disagreement_value)))
  for value in (student_l1, disagreement_value):
    if not np.isfinite(value):
      raise loop.TrainingDivergedError(
          iteration * settings.student_steps, iteration, value,
          settings.student_learning_rate)
  logging.info("zero-shot iteration %d/%d  student L1 %.4f  generator "
               "disagreement %.4f  queries %d", iteration,
               settings.iterations, student_l1, disagreement_value,
               iteration * (settings.student_steps + 1) *
               settings.batch_size)


@dataclasses.dataclass(frozen=True)
class _Game:
  """The compiled pieces of one DFAD run."""

  settings: ZeroShotConfig
  student_step: step_lib.StepFn
  generator_step: Any
  synthesise: Any
  victim_variables: Any
  key: jax.Array

  def iteration(self, iteration: int, student_state: TrainState,
                generator_state: TrainState):
    """``student_steps`` student updates, then one generator update.

    Returns:
      (student state, generator state, the last student L1, the generator's
      disagreement), the losses on the device.
    """
    keys = jax.random.split(jax.random.fold_in(self.key, iteration),
                            2 * self.settings.student_steps + 1)
    for k in range(self.settings.student_steps):
      batch = self.synthesise(generator_state.variables(),
                              self.victim_variables, keys[2 * k])
      student_state, metrics = self.student_step(student_state, batch,
                                                 keys[2 * k + 1])
    generator_state, generator_metrics = self.generator_step(
        generator_state, student_state.variables(), self.victim_variables,
        keys[-1])
    return (student_state, generator_state, metrics["loss"],
            generator_metrics["disagreement"])


def _play(game: _Game, states: dict[str, TrainState], done: int,
          checkpointer: Checkpointer | None,
          record: dict[str, Any] | None) -> TrainState:
  """Runs the iterations after ``done``; returns the student's state."""
  settings = game.settings
  student_state, generator_state = states["student"], states["generator"]
  in_flight = dispatch.DispatchWindow()
  for finished in range(done + 1, settings.iterations + 1):
    student_state, generator_state, student_l1, value = game.iteration(
        finished - 1, student_state, generator_state)
    in_flight.push(value)
    last = finished == settings.iterations
    save = checkpointer is not None and (
        last or finished % settings.checkpoint_every == 0)
    if save or last or finished % settings.log_every == 0:
      _log_progress(finished, settings, student_l1, value)
    if save:
      checkpointer.save(finished, {"student": student_state,
                                   "generator": generator_state},
                        {"iteration": finished, "identity": record})
  return student_state


def steal_data_free(config, victim: recipe.TrainedModel,
                    image_shape: tuple[int, int, int],
                    settings: ZeroShotConfig = ZeroShotConfig(), *,
                    workdir: str | None = None,
                    stream: int = 0) -> tuple[recipe.TrainedModel, int]:
  """Trains a student from the victim alone (DFAD).

  Args:
    config: the victim's training config (``configs/train.py`` fields);
      the student's is :meth:`ZeroShotConfig.student_config`.
    victim: the model stolen (its weights are used: white-box).
    image_shape: (H, W, C) of the victim's inputs.
    settings: DFAD's settings.
    workdir: checkpoint folder (a rerun resumes; another run's checkpoint
      raises :class:`jaxwm.identity.StaleRunError`); None: none.
    stream: the key stream: keys are ``fold_in(PRNGKey(config.seed),
      stream)``.

  Returns:
    (the student, victim queries spent: :attr:`ZeroShotConfig.queries`).
  """
  image_shape = tuple(int(d) for d in image_shape)
  mesh = victim.mesh
  sharding.check_batch_size(settings.batch_size, mesh)
  student_config = settings.student_config(config)
  student_model = recipe.build_model(student_config, num_classes(victim))
  student_optimizer = optim.make_optimizer(
      student_config.train, settings.student_steps, settings.iterations)
  generator = Generator(image_shape, settings.generator_width)
  generator_optimizer = optax.adam(settings.generator_learning_rate)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)
  states = {
      "student": create_train_state(student_model, student_optimizer,
                                    image_shape, jax.random.fold_in(key, 0)),
      "generator": create_train_state(generator, generator_optimizer,
                                      (settings.noise_dim,),
                                      jax.random.fold_in(key, 1))}
  shapes = dict(batch_size=settings.batch_size,
                noise_dim=settings.noise_dim, mesh=mesh)
  game = _Game(
      settings,
      step_lib.make_train_step(student_model, student_optimizer,
                               loss_fn=steal_losses.l1_to_victim_logits,
                               mesh=mesh),
      make_generator_step(generator, student_model, victim.model,
                          generator_optimizer, **shapes),
      make_synthesiser(generator, victim.model, **shapes),
      victim.variables, jax.random.fold_in(key, 2))
  checkpointer, record, done = None, None, 0
  if workdir:
    record = _run_identity(student_config, settings, victim.variables,
                           image_shape, stream)
    checkpointer = Checkpointer(workdir)
  try:
    if checkpointer is not None:
      states, done = checkpointer.resume(
          states, record, progress="iteration", limit=settings.iterations,
          limit_name="iterations", what="the zero-shot checkpoint")
    student_state = _play(game, sharding.replicate(states, mesh), done,
                          checkpointer, record)
  finally:
    if checkpointer is not None:
      checkpointer.close()
  return (recipe.TrainedModel(student_model, student_state, mesh,
                              step_lib.make_predict_fn(student_model, mesh),
                              config.eval_batch_size),
          settings.queries)
