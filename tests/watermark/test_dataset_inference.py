"""Dataset Inference on digits: MinGD and Blind Walk distances, the
confidence regressor and the verification, with a small MLP overfit to
150 training images (its distances differ on its training samples)."""

import jax
import numpy as np
import pytest

import tiny
from configs import train as train_configs
from jaxwm.models import registry
from jaxwm.train import recipe
from jaxwm.watermark import dataset_inference as di

MODEL = "dataset_inference_test_mlp"
PRIVATE = 150
FAST_MINGD = di.MinGDConfig(num_steps=60, step_linf=0.02, step_l2=0.1,
                            step_l1=0.5, l1_coordinates=16)
FAST_WALK = di.BlindWalkConfig(num_steps=30, num_directions=4,
                               uniform_linf=0.03, gaussian_l2=0.03,
                               laplace_l1=0.03)


def _config():
  config = train_configs.base_config("digits")
  config.model = MODEL
  config.model_kwargs.width = 64
  config.train.num_epochs = 60
  config.train.batch_size = 32
  config.train.weight_decay = 0.0
  config.train.augment.shift = 0
  config.train.log_every_steps = 1000
  return config


@pytest.fixture(scope="module")
def digits():
  registry.register(MODEL, tiny.Mlp)
  return recipe.load_datasets(_config())


@pytest.fixture(scope="module")
def overfit(digits):
  """(victim on train[:150], independent model on train[150:300])."""
  train = digits[0]
  return (recipe.train_model(_config(), train.take(np.arange(PRIVATE)),
                             stream=1),
          recipe.train_model(_config(), train.take(
              np.arange(PRIVATE, 2 * PRIVATE)), stream=2))


def _settings(setting):
  return di.DatasetInferenceConfig(
      setting=setting, regressor_samples=100, m=40, norms=("linf", "l2"),
      mingd=FAST_MINGD, blind_walk=FAST_WALK)


def test_mingd_moves_each_sample_into_each_target_class(overfit, digits):
  victim = overfit[0]
  images = digits[1].images[:8]
  distances, reached = di.mingd_distances(
      victim.model, victim.variables, images, 10, config=FAST_MINGD)
  own = victim.predict(images)
  assert distances.shape == reached.shape == (8, 10, 3)
  assert np.all(distances[np.arange(8), own] == 0.0)
  others = np.ones((8, 10), bool)
  others[np.arange(8), own] = False
  assert np.all(distances[others] > 0.0)
  assert reached.mean() > 0.9
  # The perturbations themselves move each sample into its target class,
  # and their size is the distance reported.
  samples, targets = np.nonzero(others & reached[..., 1])
  delta = di.mingd_perturbation(victim.model, victim.variables,
                                images[samples], targets, "l2",
                                config=FAST_MINGD)
  moved = images[samples].astype(np.float32) / 255.0 + delta
  assert moved.min() >= -1e-6 and moved.max() <= 1.0 + 1e-6
  np.testing.assert_array_equal(victim.predict(moved), targets)
  np.testing.assert_allclose(
      np.linalg.norm(delta.reshape(len(samples), -1), axis=1),
      distances[samples, targets, 1], rtol=1e-5)


def test_blind_walk_is_no_shorter_than_mingd(overfit, digits):
  victim = overfit[0]
  test = digits[1]
  images, labels = test.images[:16], test.labels[:16]
  right = victim.predict(images) == labels
  mingd, _ = di.mingd_distances(victim.model, victim.variables, images, 10,
                                config=FAST_MINGD, norms=("linf", "l2"))
  walk = di.blind_walk_distances(
      victim.model, victim.variables, images, labels, jax.random.key(0),
      config=FAST_WALK, norms=("linf", "l2"))
  assert walk.shape == (16, 4, 2) and np.all(walk > 0)
  nearest_mingd = np.where(mingd > 0, mingd, np.inf).min(axis=1)[right]
  nearest_walk = walk.min(axis=1)[right]
  assert np.all(nearest_walk.mean(0) >= nearest_mingd.mean(0))


@pytest.mark.parametrize("setting", [di.WHITE_BOX, di.BLACK_BOX])
def test_verification_accuses_the_victim_not_an_independent_model(
    setting, overfit, digits):
  train, test = digits
  victim, independent = overfit
  settings = _settings(setting)
  samples = di.draw_samples(settings, PRIVATE, len(test))
  regressor = di.fit(settings, victim.model, victim.variables,
                     train.take(samples.private_train),
                     test.take(samples.public_train))
  private, public = (train.take(samples.private_verify),
                     test.take(samples.public_verify))
  own = di.verify(settings, regressor, victim.model, victim.variables,
                  private, public)
  other = di.verify(settings, regressor, independent.model,
                    independent.variables, private, public)
  # The regressor separates held-out private samples from public ones
  # better than chance on the victim.
  separated = ((own.private_confidence > 0).mean() +
               (own.public_confidence < 0).mean()) / 2
  assert separated > 0.6
  assert own.stolen and own.test.p_value < 0.01
  assert not other.stolen


def test_samples_are_disjoint_and_a_small_set_is_refused():
  settings = _settings(di.WHITE_BOX)
  samples = di.draw_samples(settings, 200, 150)
  assert not set(samples.private_train) & set(samples.private_verify)
  assert not set(samples.public_train) & set(samples.public_verify)
  with pytest.raises(ValueError, match="public set holds 100"):
    di.draw_samples(settings, 200, 100)


def test_unknown_settings_are_named():
  with pytest.raises(ValueError, match="l3"):
    di.DatasetInferenceConfig(norms=("l3",))
  with pytest.raises(ValueError, match="unknown dataset_inference.mingd"):
    di.DatasetInferenceConfig.from_dict({"mingd": {"steps": 3}})
  with pytest.raises(ValueError, match="grey_box"):
    di.DatasetInferenceConfig(setting="grey_box")
