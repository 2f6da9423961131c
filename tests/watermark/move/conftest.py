"""Shared fixtures of the MOVE tests: digits, a fast MOVE config, and a
victim and a benign model trained once per session."""

import pytest

from configs import train as train_configs
from jaxwm.train import recipe
from jaxwm.watermark import move


def _train_config():
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 8
  config.model_kwargs.dense_width = 32
  config.train.num_epochs = 8
  config.train.log_every_steps = 1000
  return config


def _move_config():
  return move.MoveConfig.from_dict({
      "style": {"steps": 50},
      "shift": 1,
      "white_box": {"num_epochs": 30, "batch_size": 32},
      "black_box": {"num_epochs": 30, "batch_size": 32},
      "m_black_box": 25,
  })


@pytest.fixture(scope="session")
def train_config():
  return _train_config()


@pytest.fixture(scope="session")
def move_config():
  return _move_config()


@pytest.fixture(scope="session")
def digits():
  """(train, test) digits: 1,438 and 359 images, 8x8x1."""
  return recipe.load_datasets(_train_config())


@pytest.fixture(scope="session")
def marked(digits):
  """(the victim's training set, the MoveKey): 144 restyled images."""
  return move.watermark(_move_config(), digits[0])


@pytest.fixture(scope="session")
def victim(marked):
  return recipe.train_model(_train_config(), marked[0], stream=1)


@pytest.fixture(scope="session")
def benign(digits):
  return recipe.train_model(_train_config(), digits[0], stream=2)


@pytest.fixture(scope="session")
def references(digits):
  """Four benign models of other streams than ``benign`` (which trains the
  meta-classifiers), for verification."""
  return [recipe.train_model(_train_config(), digits[0], stream=stream)
          for stream in (3, 4, 5, 6)]
