"""What each launcher in ``experiments/`` checks before it trains, crafts
or queries anything.

Each function takes the launcher's config and returns the problems of
every block the launcher reads; :func:`check_launch` adds the launcher's
paths and raises one :class:`~jaxwm.config_checks.ConfigError` listing
them all.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from jaxwm.config_checks import crafted_poisons
from jaxwm.config_checks import dataset_watermarks
from jaxwm.config_checks import model_stealing as stealing
from jaxwm.config_checks import model_watermarks
from jaxwm.config_checks import paths
from jaxwm.config_checks import removal as removal_checks
from jaxwm.config_checks.core import Problem, raise_problems
from jaxwm.config_checks.training import data, training

# config -> the problems of the blocks a launcher reads.
Check = Callable[[Any], list[Problem]]


def train(config) -> list[Problem]:
  """``experiments/train.py``: the data and the training recipe."""
  problems, _ = data(config)
  return problems + training(config)


def dataset_watermark(config) -> list[Problem]:
  """``experiments/dataset_watermark.py``: the data, the recipe, the
  watermark, the Independent-T trigger and the verification (its
  evaluation classes included)."""
  problems, shape = data(config)
  return (problems + training(config) +
          dataset_watermarks.watermark(config, shape) +
          dataset_watermarks.independent_trigger(config, shape) +
          dataset_watermarks.verification(config, shape))


def ablate_ubw_p(config) -> list[Problem]:
  """``experiments/ablate_ubw_p.py``: the data, the recipe, a UBW-P
  watermark and the ablation's arms and epochs."""
  problems, shape = data(config)
  return (problems + training(config) +
          dataset_watermarks.watermark(config, shape) +
          dataset_watermarks.ablation(config))


def craft_poison(config) -> list[Problem]:
  """``experiments/craft_poison.py``: the data, the recipe, the poison,
  the watermark and verification of UBW-C and Sleeper Agent, the victims'
  recipe and their defence."""
  problems, shape = data(config)
  return (problems + training(config) + crafted_poisons.poison(config) +
          crafted_poisons.watermark(config, shape) +
          crafted_poisons.victim(config) + crafted_poisons.defense(config))


def alignment_transfer(config) -> list[Problem]:
  """``experiments/alignment_transfer.py``: what :func:`craft_poison`
  checks, for an availability poison and an undefended victim."""
  return craft_poison(config) + crafted_poisons.availability_only(config)


def model_watermark(config) -> list[Problem]:
  """``experiments/model_watermark.py``: the data, the recipe, an Adi et
  al. watermark variant and the removal, piracy and transfer attacks."""
  problems, _ = data(config)
  return (problems + training(config) +
          model_watermarks.watermark(config, "model_watermark") +
          model_watermarks.attacks(config))


def false_acceptance(config) -> list[Problem]:
  """``experiments/false_acceptance.py``: the ``false_acceptance`` block
  and what the verifier's own launcher checks: for ``adi``, the data, the
  recipe and the ``false_acceptance`` variant's key settings; for
  ``dataset``, :func:`dataset_watermark`'s; for ``move``,
  :func:`model_stealing`'s."""
  owner_checks = {"dataset": dataset_watermark, "move": model_stealing}
  verifier = model_watermarks.verifier(config)
  if verifier in owner_checks:
    problems = owner_checks[verifier](config)
  else:
    problems, _ = data(config)
    problems += (training(config) +
                 model_watermarks.watermark(config, "false_acceptance"))
  return problems + model_watermarks.false_acceptance(config)


def removal(config) -> list[Problem]:
  """``experiments/removal.py``: the row, what the launcher that owns the
  row's model checks (the data and the recipe, and the watermark), and the
  defenses and detectors."""
  problems, row = removal_checks.row(config)
  if row in removal_checks.DATASET_ROWS:
    problems += dataset_watermark(config)
  elif row in removal_checks.CRAFTED_ROWS:
    problems += craft_poison(config)
  else:
    data_problems, shape = data(config)
    problems += data_problems + training(config)
    if row in removal_checks.MODEL_ROWS:
      problems += model_watermarks.watermark(config, "model_watermark")
    elif row in removal_checks.TRIGGER_ROWS:
      problems += removal_checks.trigger_watermark(config, shape)
  return problems + removal_checks.removal(config)
def model_stealing(config) -> list[Problem]:
  """``experiments/model_stealing.py``: the data, the recipe, the method,
  the split, the attacks and their settings, the meta-classifier's models
  and the independent model."""
  problems, shape = data(config)
  return problems + training(config) + stealing.model_stealing(config, shape)


def check_launch(config, check: Check | None, *,
                 workdir: str | os.PathLike | None,
                 output_json: str | os.PathLike | None) -> None:
  """Checks a launcher's config with ``check`` (None: the paths alone) and
  its ``--workdir`` and ``--output_json``.

  Raises:
    ConfigError: listing every problem found.
  """
  problems = list(check(config)) if check is not None else []
  raise_problems(problems + paths.workdir(workdir) +
                 paths.output_file(output_json))
