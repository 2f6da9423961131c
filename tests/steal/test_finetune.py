"""Fine-tuning removal attacks (FTLL, FTAL, RTLL, RTAL) and transfer helpers."""

import dataclasses

import jax
import ml_collections
import numpy as np
import optax
import pytest

from configs import train as train_configs
from jaxwm.data.dataset import Dataset
from jaxwm.steal import finetune
from jaxwm.train import recipe
from jaxwm.train import sharding
from jaxwm.train import step as step_lib
from jaxwm.train.state import create_train_state


def _config(learning_rate):
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 4
  config.model_kwargs.dense_width = 16
  config.train.batch_size = 32
  config.train.log_every_steps = 4  # see tests/watermark/test_embedding.py
  return finetune.finetune_config(config, learning_rate=learning_rate,
                                  num_epochs=1)


@pytest.fixture(scope="module")
def digits():
  train, _ = recipe.load_datasets(_config(0.1))
  return train


@pytest.fixture(scope="module")
def victim(digits):
  """An untrained model: what the attacks do to it is all that matters."""
  config = _config(0.1)
  model = recipe.build_model(config, digits.num_classes)
  state = create_train_state(model, optax.identity(), digits.image_shape,
                             jax.random.PRNGKey(7))
  mesh = sharding.make_mesh()
  return recipe.TrainedModel(model, state, mesh,
                             step_lib.make_predict_fn(model, mesh))


def _leaves(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _split(params):
  """(head leaves, other leaves) of a parameter tree."""
  leaves = _leaves(params)
  head = {k: v for k, v in leaves.items() if k.startswith("['head']")}
  return head, {k: v for k, v in leaves.items() if k not in head}


def test_ftll_updates_the_head_only(digits, victim):
  attacked = finetune.fine_tune(_config(0.05), victim, digits, "ftll")
  head, body = _split(attacked.state.params)
  head0, body0 = _split(victim.state.params)
  assert head and body
  for name, value in body.items():
    np.testing.assert_array_equal(value, body0[name], err_msg=name)
  assert max(np.abs(head[k] - head0[k]).max() for k in head) > 1e-3


def test_rtll_reinitialises_the_head_and_freezes_the_rest(digits, victim):
  # A learning rate this small leaves the head where it started: the new
  # initialisation, far from the victim's head.
  attacked = finetune.fine_tune(_config(1e-9), victim, digits, "rtll",
                                stream=3)
  head, body = _split(attacked.state.params)
  head0, body0 = _split(victim.state.params)
  for name, value in body.items():
    np.testing.assert_array_equal(value, body0[name], err_msg=name)
  kernel = "['head']['kernel']"
  assert np.abs(head[kernel] - head0[kernel]).max() > 0.05
  assert np.abs(head[kernel]).std() > 0.01  # a real initialisation, not 0.


def test_attack_table_matches_the_paper():
  assert {name: (a.last_layer_only, a.reinitialise_head)
          for name, a in finetune.ATTACKS.items()} == {
              "ftll": (True, False), "ftal": (False, False),
              "rtll": (True, True), "rtal": (False, True)}
  assert finetune.get_attack("RTAL") is finetune.ATTACKS["rtal"]
  with pytest.raises(ValueError, match="ftll, ftal, rtll, rtal"):
    finetune.get_attack("prune")


def test_final_learning_rate_hand_worked():
  recipe_config = ml_collections.ConfigDict(dict(
      schedule="step", learning_rate=0.1, gamma=0.1, milestones=(20, 40)))
  # Section 4.6: 0.1, divided by ten at epochs 20 and 40 -> 0.001.
  assert finetune.final_learning_rate(recipe_config) == pytest.approx(1e-3)
  recipe_config.schedule = "constant"
  assert finetune.final_learning_rate(recipe_config) == 0.1
  recipe_config.schedule = "cosine"
  with pytest.raises(ValueError, match="decays to 0"):
    finetune.final_learning_rate(recipe_config)


def test_finetune_config_is_a_constant_rate_copy():
  config = train_configs.base_config("digits")
  derived = finetune.finetune_config(config, learning_rate=2e-3,
                                     num_epochs=3)
  assert (derived.train.schedule, derived.train.learning_rate,
          derived.train.num_epochs) == ("constant", 2e-3, 3)
  assert derived.train.batch_size == config.train.batch_size
  assert config.train.schedule == "cosine"  # the original is unchanged.
  with pytest.raises(ValueError, match="learning_rate must be > 0"):
    finetune.finetune_config(config, learning_rate=0.0, num_epochs=1)
  with pytest.raises(ValueError, match="num_epochs must be >= 1"):
    finetune.finetune_config(config, learning_rate=0.1, num_epochs=0)


def test_without_head_and_is_head():
  variables = {"params": {"head": {"kernel": 1}, "Dense_0": {"kernel": 2}},
               "batch_stats": {"x": 3}}
  stripped = finetune.without_head(variables)
  assert stripped == {"params": {"Dense_0": {"kernel": 2}},
                      "batch_stats": {"x": 3}}
  assert "head" in variables["params"]  # not modified in place.
  assert finetune.is_head(("head", "kernel"))
  assert not finetune.is_head(("Dense_0", "kernel")) and not finetune.is_head(())
  with pytest.raises(ValueError, match="no output layer named 'head'"):
    finetune.without_head(stripped)


def test_with_head_puts_the_original_head_on_the_body(victim):
  params = jax.device_get(victim.state.params)
  moved = jax.tree.map(lambda x: x + 1.0, params)
  body = dataclasses.replace(victim, state=victim.state.replace(params=moved))
  joined = finetune.with_head(body, victim)
  head, rest = _split(joined.state.params)
  head0, _ = _split(params)
  _, rest1 = _split(moved)
  for name, value in head.items():
    np.testing.assert_array_equal(value, head0[name])
  for name, value in rest.items():
    np.testing.assert_array_equal(value, rest1[name])


def test_to_image_shape_resizes_and_converts_channels():
  images = np.zeros((3, 8, 8, 1), np.uint8)
  images[0] = 200
  images[1, :, :4] = 255
  data = Dataset(images, np.array([0, 1, 2]), 3)
  big = finetune.to_image_shape(data, (28, 28, 1))
  assert big.images.shape == (3, 28, 28, 1) and big.images.dtype == np.uint8
  np.testing.assert_array_equal(big.images[0], 200)  # constant stays constant.
  np.testing.assert_array_equal(big.images[2], 0)
  assert big.images[1, :, :12].min() == 255 and big.images[1, :, 16:].max() == 0
  np.testing.assert_array_equal(big.labels, data.labels)
  colour = finetune.to_image_shape(data, (8, 8, 3))
  np.testing.assert_array_equal(colour.images, np.repeat(images, 3, axis=-1))
  grey = finetune.to_image_shape(colour, (8, 8, 1))
  np.testing.assert_array_equal(grey.images, images)
  with pytest.raises(ValueError, match="3-channel images into 2-channel"):
    finetune.to_image_shape(colour, (8, 8, 2))
