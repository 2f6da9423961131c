"""Data-free adversarial distillation: the generator and its update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import train as train_configs
from jaxwm.models import common
from jaxwm.steal import zero_shot
from jaxwm.train import recipe, sharding
from jaxwm.train import step as step_lib
from jaxwm.train.state import create_train_state

IMAGE_SHAPE = (8, 8, 1)


def _config():
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 4
  config.model_kwargs.dense_width = 16
  return config


def _model(stream):
  """An untrained jaxwm cnn on 8x8 grey images, as a TrainedModel."""
  config = _config()
  model = recipe.build_model(config, 10)
  state = create_train_state(model, optax.identity(), IMAGE_SHAPE,
                             jax.random.PRNGKey(stream))
  mesh = sharding.make_mesh()
  return recipe.TrainedModel(model, state, mesh,
                             step_lib.make_predict_fn(model, mesh))


def test_generator_standardises_each_channel_at_the_image_shape():
  image_shape = (30, 30, 3)  # built at 32 x 32, then cropped.
  generator = zero_shot.Generator(image_shape, width=4)
  z = zero_shot.noise(jax.random.PRNGKey(0), 16, 10)
  variables = jax.jit(generator.init)(jax.random.PRNGKey(1), z)
  images, _ = jax.jit(zero_shot.generate, static_argnums=0)(
      generator, variables, z)
  assert images.shape == (16, *image_shape) and images.dtype == jnp.float32
  # What the models see after normalising: per channel over the batch,
  # mean 0 and variance 1 before the crop, about so after it.
  seen = np.asarray(common.normalize(images, jnp.float32))
  np.testing.assert_allclose(seen.mean(axis=(0, 1, 2)), 0.0, atol=0.1)
  np.testing.assert_allclose(seen.std(axis=(0, 1, 2)), 1.0, atol=0.1)


def test_generator_step_increases_the_disagreement_on_a_fixed_student():
  victim, student = _model(0), _model(1)
  generator = zero_shot.Generator(IMAGE_SHAPE, width=4)
  optimizer = optax.adam(1e-3)
  state = sharding.replicate(
      create_train_state(generator, optimizer, (10,),
                         jax.random.PRNGKey(2)), victim.mesh)
  step = zero_shot.make_generator_step(generator, student.model,
                                       victim.model, optimizer,
                                       batch_size=16, noise_dim=10,
                                       mesh=victim.mesh)
  rng = jax.random.PRNGKey(3)
  z = zero_shot.noise(rng, 16, 10)  # the step's own noise

  @jax.jit
  def disagreement(generator_variables):
    value, _ = zero_shot.disagreement(
        generator, student.model, victim.model, generator_variables,
        student.variables, victim.variables, z)
    return value

  before = float(disagreement(state.variables()))
  state, metrics = step(state, student.variables, victim.variables, rng)
  assert float(metrics["disagreement"]) == pytest.approx(before, rel=1e-5)
  assert float(disagreement(state.variables())) > before


def test_settings_are_checked_and_the_budget_counted():
  settings = zero_shot.ZeroShotConfig(iterations=7, student_steps=3,
                                      batch_size=16)
  assert settings.queries == 7 * (3 + 1) * 16
  with pytest.raises(ValueError, match="iterations must be > 0, got 0"):
    zero_shot.ZeroShotConfig(iterations=0)
  with pytest.raises(ValueError, match="batch_size must be an integer"):
    zero_shot.ZeroShotConfig(batch_size=12.5)
  with pytest.raises(ValueError, match="student_learning_rate must be > 0"):
    zero_shot.ZeroShotConfig(student_learning_rate=-1.0)
