"""Checks of the crafted-poison blocks of ``configs/craft_poison.py``:
``method``, ``poison``, ``watermark`` (UBW-C and Sleeper Agent),
``victim`` and ``defense``.

``poison.epsilon`` and ``defense.noise_epsilon`` are checked, and
reported, in the config's units of 1/255.
"""

from __future__ import annotations

import dataclasses

from jaxwm import alignment
from jaxwm.config_checks import dataset_watermarks
from jaxwm.config_checks.core import Fields, MISSING, Problem
from jaxwm.config_checks.training import DataShape, augment
from jaxwm.poison import alignment_watermark
from jaxwm.poison import availability
from jaxwm.poison.methods import ALIGNMENT_WATERMARKS

WATERMARKS = tuple(ALIGNMENT_WATERMARKS)
METHODS = availability.METHODS + WATERMARKS
DEFENSES = ("none", "gaussian_smoothing", "additive_noise", "dp_sgd")
VICTIM_INITS = ("own", "surrogate")
_PIXEL_UNITS = "units of 1/255"


def method(config) -> str | None:
  """The poison's method, or None where ``config.method`` is no method."""
  value = Fields(config, "", []).get("method", optional=True)
  return value if isinstance(value, str) and value in METHODS else None


def poison(config) -> list[Problem]:
  """``method`` and the crafting loop's ``poison`` block."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  root.choice("method", METHODS)
  fields = root.block_of("poison")
  fields.number("epsilon", 0, 255, low_open=True, units=_PIXEL_UNITS,
                example=8)
  fields.integer("steps", 1, example=240)
  fields.integer("restarts", 1, example=8)
  fields.number("learning_rate", 0, low_open=True, example=0.025)
  fields.sequence("milestones", 0, 1, integer=False, low_open=True,
                  high_open=True, example='"(0.375,0.625)"')
  fields.number("gamma", 0, low_open=True, example=0.1)
  fields.integer("batch_size", 1, example=128)
  augment(fields.block_of("augment"))
  fields.boolean("independent")
  weights = fields.block_of("regularizers")
  names = tuple(f.name for f in dataclasses.fields(alignment.Regularizers))
  weights.known(names, "Regularizers")
  for name in names:
    weights.number(name, 0, optional=True, example=0.1)
  fields.integer("retrain_every", 0, example=25)
  fields.integer("checkpoint_every", 1, example=10)
  fields.integer("log_every", 1, example=10)
  fields.number("target_fraction", 0, 1, low_open=True, example=1)
  _surrogate_epochs(fields, config)
  return problems


def _surrogate_epochs(fields: Fields, config) -> None:
  """Checkpoint epochs of the surrogate, for the crafted availability
  poisons only, within its training."""
  epochs = fields.get("surrogate_epochs")
  if epochs is MISSING or (isinstance(epochs, (list, tuple)) and not epochs):
    return
  if method(config) not in availability.CRAFTED_METHODS:
    fields.fail("surrogate_epochs", epochs, "applies to " +
                " and ".join(availability.CRAFTED_METHODS) +
                ' only; leave it empty: --config.poison.surrogate_epochs="()".')
    return
  total = Fields(config, "", []).block_of("train").get("num_epochs")
  high = total if isinstance(total, int) and total >= 1 else None
  fields.sequence("surrogate_epochs", 1, high, increasing=True,
                  example='"(2,5,10)"')


def watermark(config, shape: DataShape | None) -> list[Problem]:
  """UBW-C and Sleeper Agent: ``watermark``, ``independent_trigger`` and
  ``verify``; nothing for the availability poisons, which use none."""
  if method(config) not in WATERMARKS:
    return []
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("watermark")
  fields.known(tuple(f.name for f in dataclasses.fields(
      alignment_watermark.AlignmentWatermarkConfig)),
               "AlignmentWatermarkConfig")
  fields.number("poison_rate", 0, 1, low_open=True, example=0.1)
  dataset_watermarks.label(fields, "source_class", shape)
  dataset_watermarks.label(fields, "target_label", shape)
  fields.number("lam", 0, example=2)
  fields.choice("selection", alignment.SELECTIONS)
  fields.integer("selection_batch_size", 1, example=64)
  fields.choice("craft_patch_positions",
                alignment_watermark.CRAFT_PATCH_POSITIONS)
  dataset_watermarks.patch(fields, shape)
  return (problems + dataset_watermarks.independent_trigger(config, shape) +
          dataset_watermarks.verification(config))


def victim(config) -> list[Problem]:
  """The ``victim`` block: where set, it replaces the victims' recipe."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("victim")
  fields.choice("init", VICTIM_INITS)
  fields.integer("num_epochs", 1, allow_none=True, example=40)
  augment(fields.block_of("augment"), allow_none=True)
  return problems


def defense(config) -> list[Problem]:
  """The ``defense`` block: the victims' training-time defence."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("defense")
  fields.choice("name", DEFENSES)
  fields.integer("smoothing_radius", 1, example=2)
  fields.number("smoothing_sigma", 0, low_open=True, example=1)
  fields.number("noise_epsilon", 0, 255, low_open=True, units=_PIXEL_UNITS,
                example=8)
  fields.number("dp_l2_clip", 0, low_open=True, example=0.1)
  fields.number("dp_noise_multiplier", 0, example=0.01)
  return problems


def availability_only(config) -> list[Problem]:
  """``experiments/alignment_transfer.py``: an availability poison and an
  undefended victim."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  value = root.get("method")
  if value is not MISSING and value not in availability.METHODS:
    root.fail("method", value, "the curve follows an availability poison; "
              "use one of " + ", ".join(availability.METHODS) + ", e.g. "
              "--config=configs/craft_poison.py:availability,digits,runlocal.")
  name = root.block_of("defense").get("name")
  if name is not MISSING and name != "none":
    root.fail("defense.name", name, "the curve follows the undefended "
              "victim; set --config.defense.name=none.")
  return problems
