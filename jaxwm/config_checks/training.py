"""Checks of what every launcher uses: the data and the training recipe.

:func:`data` checks the fields :func:`jaxwm.train.recipe.load_datasets`
reads (``dataset``, ``data_dir``, ``train_fraction``; the ``seed`` is
:func:`training`'s) and loads the test split;
:func:`training` those :func:`jaxwm.train.recipe.train_model` reads
(``seed``, ``model``, ``model_kwargs``, ``eval_batch_size`` and the
``train`` block), and ``train_model`` runs it before it builds anything.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxwm.config_checks.core import Fields, Problem, MISSING
from jaxwm.data import augment as augment_lib
from jaxwm.data import loaders
from jaxwm.models import registry

# The choices of jaxwm.train.optim.make_optimizer.
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
TRAIN_FIELDS = ("batch_size", "num_epochs", "optimizer", "learning_rate",
                "momentum", "nesterov", "weight_decay", "schedule",
                "milestones", "gamma", "warmup_epochs", "dtype", "augment",
                "checkpoint_every_epochs", "log_every_steps")
# Seeds must suit NumPy's generators and jax.random.PRNGKey alike.
_SEED_LIMIT = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class DataShape:
  """What checks of labels and triggers need to know about the data.

  Attributes:
    num_classes: K.
    image_shape: (H, W, C).
  """

  num_classes: int
  image_shape: tuple[int, ...]


def loadable(fields: Fields, field: str,
             data_dir: str | None = None) -> DataShape | None:
  """The shape of the dataset ``field`` names, from its test split; None
  (and a problem with the loader's message) when it cannot be loaded."""
  name = fields.get(field)
  if name is MISSING:
    return None
  if not isinstance(name, str):
    fields.fail(field, name, "must be a dataset name: digits, "
                "fashion_mnist, tfds:NAME, npz:PATH or folder:PATH.")
    return None
  try:
    test = loaders.load(name, "test", data_dir)
  except (ValueError, OSError, ImportError) as error:
    fields.fail(field, name, f"cannot be loaded: {error}")
    return None
  return DataShape(test.num_classes, test.image_shape)


def data(config) -> tuple[list[Problem], DataShape | None]:
  """Problems with the dataset, its folder and the training fraction.

  The dataset's test split is loaded (the run loads it next anyway) so
  that label and trigger settings can be checked against its classes and
  image size.

  Returns:
    (the problems, the data's shape or None where it cannot be loaded).
  """
  problems: list[Problem] = []
  fields = Fields(config, "", problems)
  fields.number("train_fraction", 0, 1, low_open=True, example=0.1)
  data_dir = fields.get("data_dir")
  return problems, loadable(fields, "dataset",
                            None if data_dir is MISSING else data_dir)


def seed(fields: Fields) -> bool:
  """``seed``: an integer NumPy and JAX both take."""
  return fields.integer("seed", 0, _SEED_LIMIT, example=1)


def augment(fields: Fields, allow_none: bool = False) -> None:
  """An ``augment`` block (the fields of ``AugmentConfig``); with
  ``allow_none``, None leaves a field as it is elsewhere."""
  fields.known([f.name for f in dataclasses.fields(augment_lib.AugmentConfig)],
               "AugmentConfig")
  fields.integer("shift", 0, optional=True, allow_none=allow_none, example=2)
  fields.choice("shift_mode", tuple(augment_lib.PAD_MODES), optional=True)
  if not (allow_none and fields.get("flip", optional=True) is None):
    fields.boolean("flip", optional=True)
  fields.number("erasing", 0, 1, optional=True, allow_none=allow_none,
                example=0.5)


def _model(fields: Fields) -> None:
  """``model`` is registered and takes ``model_kwargs``."""
  name, kwargs = fields.get("model"), fields.get("model_kwargs")
  if name is MISSING or kwargs is MISSING:
    return
  if name not in registry.model_names():
    fields.fail("model", name, "must be one of "
                f"{', '.join(registry.model_names())}, e.g. --config.model=cnn "
                "or the model in the config variant.")
    return
  kwargs = dict(kwargs)
  reserved = sorted({"num_classes", "dtype"} & set(kwargs))
  if reserved:
    fields.fail("model_kwargs", kwargs, f"{', '.join(reserved)} come from "
                "the dataset and train.dtype; remove them.")
    return
  try:  # Building a Flax module only records its fields: it is cheap.
    registry.get_model(name, num_classes=2, **kwargs)
  except TypeError as error:
    fields.fail("model_kwargs", kwargs, f"model {name} does not take these "
                f"({error}); remove the fields it does not have.")


def _dtype(fields: Fields) -> None:
  value = fields.get("dtype")
  if value is MISSING:
    return
  try:
    floating = jnp.issubdtype(jnp.dtype(value), jnp.floating)
  except TypeError:
    floating = False
  if not floating:
    fields.fail("dtype", value, "must be a floating dtype, e.g. "
                "--config.train.dtype=bfloat16 or float32.")


def training(config) -> list[Problem]:
  """Problems with the model, the seed and the ``train`` recipe."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems)
  seed(fields)
  _model(fields)
  fields.integer("eval_batch_size", 1, example=1000)
  train = fields.block_of("train")
  if train.block is None:
    return problems
  train.known(TRAIN_FIELDS, "the train block")
  train.integer("batch_size", 1, example=128)
  train.integer("num_epochs", 1, example=12)
  optimizer_ok = train.choice("optimizer", OPTIMIZERS)
  train.number("learning_rate", 0, low_open=True, example=0.05)
  if optimizer_ok and train.block["optimizer"] == "sgd":
    train.number("momentum", 0, 1, high_open=True, example=0.9)
  train.boolean("nesterov", optional=True)
  train.number("weight_decay", 0, example=5e-4)
  train.choice("schedule", SCHEDULES)
  train.sequence("milestones", 0, integer=False, low_open=True,
                 optional=True, example='"(10,)"')
  train.number("gamma", 0, low_open=True, optional=True, example=0.1)
  train.number("warmup_epochs", 0, optional=True, example=1)
  _dtype(train)
  augment(train.block_of("augment"))
  train.integer("checkpoint_every_epochs", 1, optional=True, example=1)
  train.integer("log_every_steps", 1, optional=True, example=100)
  return problems
