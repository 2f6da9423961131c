"""Shared fixtures of the detector tests: a BadNets-watermarked digits CNN.

One tiny CNN is trained once per session on scikit-learn digits (8x8 grey)
of which 10% carry a white 3x3 patch in the bottom-right corner and the
target label 0; the detectors are run against it.
"""

import dataclasses

import jax
import numpy as np
import pytest

from configs import train as train_configs
from jaxwm import poison
from jaxwm.data.dataset import Dataset
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.train import recipe

TARGET = 0
PATCH = 3


@dataclasses.dataclass(frozen=True)
class Watermarked:
  """A BadNets digits model with its data.

  Attributes:
    trained: the model trained on ``marked``.
    marked: the watermarked training set.
    key: its watermark key (poisoned indices, trigger).
    test: the clean test split.
  """

  trained: recipe.TrainedModel
  marked: Dataset
  key: WatermarkKey
  test: Dataset

  @property
  def region(self) -> np.ndarray:
    """bool [8, 8], the patch's pixels."""
    region = np.zeros(self.test.image_shape[:2], bool)
    region[-PATCH:, -PATCH:] = True
    return region

  def triggered_test(self) -> tuple[np.ndarray, np.ndarray]:
    """(clean, triggered) uint8 test images of the classes other than the
    target."""
    clean = self.test.images[self.test.labels != TARGET]
    return clean, self.key.apply_trigger_uint8(clean)


def _config():
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 8
  config.model_kwargs.dense_width = 32
  config.train.num_epochs = 20
  config.train.log_every_steps = 1000
  return config


@pytest.fixture(scope="session")
def badnets_digits() -> Watermarked:
  config = _config()
  train, test = recipe.load_datasets(config)
  marked, key = poison.mark(
      train, poison.PoisonedLabelConfig(
          method="badnets", poison_rate=0.1, target_label=TARGET,
          patch_size=PATCH, patch_pattern="white"),
      jax.random.PRNGKey(0))
  return Watermarked(recipe.train_model(config, marked), marked, key, test)
