"""Mark through the training engine: FROMSCRATCH and PRETRAINED on digits."""

import jax
import numpy as np
import pytest

from configs import train as train_configs
from jaxwm.train import recipe
from jaxwm.watermark import adi
from jaxwm.watermark import embedding


def _config(epochs):
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 8
  config.model_kwargs.dense_width = 64
  config.train.num_epochs = epochs
  config.train.batch_size = 16
  # Synchronise often: many steps in flight on fake CPU devices can
  # deadlock XLA's CPU collectives.
  config.train.log_every_steps = 4
  return config


@pytest.fixture(scope="module")
def digits():
  config = _config(1)
  return recipe.load_datasets(config)


@pytest.fixture(scope="module")
def owner_keys(digits):
  train, _ = digits
  return adi.keygen(10, train.num_classes, train.image_shape, seed=1)


@pytest.fixture(scope="module")
def fromscratch(digits, owner_keys):
  train, _ = digits
  return embedding.mark(_config(6), train, owner_keys[0],
                        embedding.FROMSCRATCH)


def test_trigger_batch_fn_puts_k_triggers_last(owner_keys):
  mk, _ = owner_keys
  batch = {"image": np.zeros((8, 8, 8, 1), np.uint8),
           "label": np.full(8, -1, np.int32)}
  out = jax.jit(embedding.trigger_batch_fn(mk, k=3))(batch,
                                                     jax.random.key(0))
  images, labels = np.asarray(out["image"]), np.asarray(out["label"])
  assert images.shape == (8, 8, 8, 1) and labels.shape == (8,)
  np.testing.assert_array_equal(labels[:5], -1)
  np.testing.assert_array_equal(images[:5], 0)
  for image, label in zip(images[5:], labels[5:]):
    index = np.flatnonzero((mk.triggers.images == image).all(axis=(1, 2, 3)))
    assert index.size == 1 and mk.triggers.labels[index[0]] == label


def test_only_training_rows_are_augmented():
  transform = embedding.augment_all_but_triggers(
      lambda images, key: images + jax.random.uniform(key), k=2)
  images = np.zeros((6, 4, 4, 1), np.float32)
  out = np.asarray(jax.jit(transform)(images, jax.random.key(0)))
  assert out.shape == images.shape
  assert np.all(out[:4] > 0) and np.all(out[4:] == 0)


def test_fromscratch_embeds_the_trigger_set(digits, owner_keys, fromscratch):
  _, test = digits
  result = adi.verify(*owner_keys, fromscratch.predict_proba)
  assert result.agreement == 1.0 and result.p_value == pytest.approx(1e-10)
  assert fromscratch.evaluate(test)["accuracy"] > 0.85


def test_pretrained_embeds_a_second_trigger_set(digits, fromscratch):
  """PRETRAINED on a marked model: the ownership-piracy set-up."""
  train, _ = digits
  pirate_keys = adi.keygen(10, train.num_classes, train.image_shape, seed=2)
  before = adi.verify(*pirate_keys, fromscratch.predict_proba)
  config = _config(3)
  pirated = embedding.mark(config, train, pirate_keys[0],
                           embedding.PRETRAINED,
                           base_variables=fromscratch.variables, stream=1)
  after = adi.verify(*pirate_keys, pirated.predict_proba)
  assert before.agreement <= 0.3 and not before.accepted_binomial
  assert after.agreement >= 0.9 and after.accepted_binomial
  assert after.accepted_threshold == (after.agreement >= 0.9)


def test_mark_rejects_bad_arguments(digits, owner_keys, fromscratch):
  train, _ = digits
  mk, _ = owner_keys
  config = _config(1)
  with pytest.raises(ValueError, match="mode must be one of"):
    embedding.mark(config, train, mk, "scratch")
  with pytest.raises(ValueError, match="needs base_variables"):
    embedding.mark(config, train, mk, embedding.PRETRAINED)
  with pytest.raises(ValueError, match="takes no base_variables"):
    embedding.mark(config, train, mk, embedding.FROMSCRATCH,
                   base_variables=fromscratch.variables)
  other, _ = adi.keygen(5, train.num_classes, (9, 9, 1), seed=0)
  with pytest.raises(ValueError, match=r"image shape \(9, 9, 1\)"):
    embedding.mark(config, train, other, embedding.FROMSCRATCH)
