"""Small models and configs shared by tests (tests/ is on sys.path through
tests/conftest.py, so test files import this as ``tiny``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp

from configs import train as train_configs
from jaxwm.models import common


def xla_flags(local_devices: int) -> str:
  """The suite's ``XLA_FLAGS`` (tests/conftest.py) with ``local_devices``
  CPU devices instead of eight, for the processes a test starts."""
  flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
           if not flag.startswith("--xla_force_host_platform_device_count")]
  if local_devices != 1:
    flags.append(f"--xla_force_host_platform_device_count={local_devices}")
  return " ".join(flags)


class Linear(nn.Module):
  """Logits = head(flattened image): compiles in a fraction of a CNN's time."""

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    return common.classifier_head(x.reshape(x.shape[0], -1),
                                  self.num_classes, jnp.float32, self)


class Mlp(nn.Module):
  """One hidden layer of ``width`` units and the jaxwm head."""

  num_classes: int
  width: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = common.normalize(x, self.dtype).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.width, dtype=self.dtype)(x))
    return common.classifier_head(x, self.num_classes, self.dtype, self)


def digits_cnn_config(epochs: int):
  """configs/train.py's digits recipe with a width-4 CNN, batch 32."""
  config = train_configs.base_config("digits")
  config.model_kwargs.width = 4
  config.model_kwargs.dense_width = 16
  config.train.num_epochs = epochs
  config.train.batch_size = 32
  # Synchronise often: many steps in flight on fake CPU devices can
  # deadlock XLA's CPU collectives.
  config.train.log_every_steps = 4
  return config


@contextlib.contextmanager
def mock_tfds(num_examples: int) -> Iterator[None]:
  """``tfds.testing.mock_data`` whose data sources read a batch example by
  example: the mock's own batch read (``__getitems__``, set on a MagicMock
  as a plain function by tensorflow-datasets 4.9) fails when called, so
  jaxwm's batch reads (``read_examples``) go through ``__getitem__``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.data_sources import base  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
      base.BaseDataSource, "__getitems__",
      lambda self, keys: [self[key] for key in keys]):
    yield
