"""Shared fixtures of the model-watermark tests: stand-in models."""

import numpy as np
import pytest

from jaxwm.data.dataset import Dataset


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
