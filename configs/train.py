"""Train a classifier: ``--config=configs/train.py:VARIANT``.

VARIANT is a comma list of a dataset (``digits``, ``fashion_mnist``, or any
``tfds:NAME`` such as ``tfds:cifar10``), optionally a model (``cnn``,
``resnet18``, ``resnet34``, ``vgg16_bn``, ``vgg19_bn``, ``wrn16_4``,
``wrn28_10``) and optionally ``runlocal`` (a tiny, fast smoke run), e.g.
``fashion_mnist,cnn`` or ``fashion_mnist,resnet18,runlocal``. The dataset
is required: no variant falls back to a default one.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

MODELS = ("cnn", "resnet18", "resnet34", "vgg16_bn", "vgg19_bn", "wrn16_4",
          "wrn28_10")


def split_variant(arg: str | None, choices: Sequence[str],
                  examples: str) -> tuple[str, str]:
  """``"ubw_p,fashion_mnist,runlocal"`` -> (``"ubw_p"``, the rest).

  Args:
    arg: the variant typed after the config file's path.
    choices: what its first part may be (methods, modes, rows).
    examples: variants to show in the error, e.g. ``"ubw_p,digits"``.

  Raises:
    ValueError: the first part is not one of ``choices``.
  """
  first, _, rest = (arg or "").partition(",")
  if first not in choices:
    raise ValueError(
        f"config variant {arg or ''!r} must start with one of "
        f"{', '.join(choices)}, e.g. {examples}.")
  return first, rest


def parse_variant(arg: str | None,
                  method: str | None = None) -> tuple[str, str | None, bool]:
  """``"fashion_mnist,resnet18,runlocal"`` -> (dataset, model, runlocal).

  Args:
    arg: the variant, or what follows the method in it.
    method: the method in front of ``arg`` in the variant typed, if any.

  Raises:
    ValueError: no dataset (there is no default one), several datasets or
      several models.
  """
  parts = [p for p in (arg or "").split(",") if p]
  runlocal = "runlocal" in parts
  models = [p for p in parts if p in MODELS]
  datasets = [p for p in parts if p not in MODELS and p != "runlocal"]
  if len(datasets) != 1 or len(models) > 1:
    typed = ",".join(part for part in (method, arg) if part)
    lead = f"{method}," if method else ""
    raise ValueError(
        f"config variant {typed!r} must name one dataset (digits, "
        "fashion_mnist, tfds:NAME, npz:PATH or folder:PATH), at most one "
        f"model ({', '.join(MODELS)}) and optionally runlocal, e.g. "
        f"{lead}fashion_mnist or {lead}digits,runlocal.")
  return datasets[0], (models[0] if models else None), runlocal


def training_config(model: str) -> ml_collections.ConfigDict:
  """The optimisation recipe for ``model`` (shared by every launcher)."""
  small = model == "cnn"
  return ml_collections.ConfigDict(dict(
      batch_size=128,
      num_epochs=12 if small else 30,
      optimizer="sgd",
      learning_rate=0.05 if small else 0.1,
      momentum=0.9,
      nesterov=True,
      weight_decay=5e-4,
      schedule="cosine",
      milestones=(),
      gamma=0.1,
      warmup_epochs=0.0,
      dtype="float32",
      augment=dict(shift=2, flip=True, erasing=0.0),
      checkpoint_every_epochs=1,
      log_every_steps=100,
  ))


def base_config(arg: str | None,
                method: str | None = None) -> ml_collections.ConfigDict:
  """Dataset, model, seed and training recipe for a variant string (what
  follows ``method`` in the variant typed)."""
  dataset, model, runlocal = parse_variant(arg, method)
  model = model or "cnn"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.train_fraction = 1.0
  config.eval_batch_size = 1000
  config.train = training_config(model)
  if dataset == "digits":
    config.train.batch_size = 64
    config.train.num_epochs = 40
    config.train.augment.shift = 1
    config.train.augment.flip = False
  if runlocal:
    config.train_fraction = 0.1
    config.train.num_epochs = 1
    config.train.log_every_steps = 10
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return base_config(arg)
