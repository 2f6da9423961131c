"""Shared fixtures of the model-watermark tests: stand-in and tiny models."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.data.dataset import Dataset
from jaxwm.models import common
from jaxwm.models import registry

TINY_MODEL = "watermark_tests_tiny_mlp"


def _lookup_model(triggers: Dataset, labels=None, default=0):
  """A model answering ``labels`` on the trigger images, ``default`` else."""
  labels = triggers.labels if labels is None else labels
  table = {image.tobytes(): label
           for image, label in zip(triggers.float_images(), labels)}

  def predict(images):
    assert images.dtype == np.float32 and images.max() <= 1.0
    predicted = [table.get(image.tobytes(), default) for image in images]
    return np.eye(triggers.num_classes)[predicted]

  return predict


def _refuse_queries(images):
  raise AssertionError("the model was queried although the keys mismatch")


@pytest.fixture
def lookup_model():
  """Factory: ``lookup_model(triggers, labels=None)`` -> predict."""
  return _lookup_model


@pytest.fixture
def refuse_queries():
  """A predict function that fails the test when called."""
  return _refuse_queries


class _TinyMlp(nn.Module):
  """A one-hidden-layer model following the jaxwm conventions (its classifier
  is the Dense named "head"); it compiles in a fraction of the CNN's time."""

  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = common.normalize(x, self.dtype).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(32, dtype=self.dtype)(x))
    return common.classifier_head(x, self.num_classes, self.dtype, self)


@pytest.fixture(scope="session")
def tiny_model_name():
  """Registers the tiny model and returns its registry name."""
  registry.register(TINY_MODEL, _TinyMlp)
  return TINY_MODEL
