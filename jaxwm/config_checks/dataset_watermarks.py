"""Checks of the dataset watermark blocks: ``watermark``,
``independent_trigger``, ``verify`` and ``ablation``
(``configs/dataset_watermark.py``; ``verify`` and the patch fields also in
``configs/craft_poison.py``).

Labels are checked against the dataset's classes and patches against its
image size when the data's shape is known (see
:func:`jaxwm.config_checks.training.data`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxwm.config_checks.core import Fields, MISSING, Problem
from jaxwm.config_checks.training import DataShape
from jaxwm.poison import label_consistent
from jaxwm.poison import methods
from jaxwm.poison import poisoned_label
from jaxwm.poison import triggers
from jaxwm.train import recipe

PATCH_FIELDS = ("patch_size", "patch_position", "patch_pattern")
PATCH_PATTERNS = ("checkerboard", "white")


def label(fields: Fields, field: str, shape: DataShape | None) -> bool:
  """A class index in [0, K) (K from ``shape`` when known)."""
  high = shape.num_classes - 1 if shape else None
  return fields.integer(field, 0, high, example=1)


def _patch_types(fields: Fields) -> bool:
  ok = fields.integer("patch_size", 1, optional=True, allow_none=True,
                      example=3)
  ok &= fields.sequence("patch_position", 0, length=2, optional=True,
                        allow_none=True, example='"(0,0)"')
  return fields.choice("patch_pattern", PATCH_PATTERNS, optional=True) and ok


def patch(fields: Fields, shape: DataShape | None,
          inherited: Mapping[str, Any] | None = None) -> None:
  """The BadNets patch fields (``patch_size``, ``patch_position``,
  ``patch_pattern``), and that the patch fits the images.

  Args:
    fields: the block holding the patch fields.
    shape: the data's shape, or None.
    inherited: the block whose patch fields ``fields`` overrides in part
      (the watermark block of an ``independent_trigger`` block); its own
      problems are reported with it.
  """
  if not _patch_types(fields) or shape is None:
    return
  settings = dict.fromkeys(PATCH_FIELDS)
  if inherited is not None:
    if not _patch_types(Fields(inherited, "", [])):
      return
    settings.update({name: inherited[name] for name in PATCH_FIELDS
                     if name in inherited})
  settings.update({name: fields.block[name] for name in PATCH_FIELDS
                   if fields.has(name)})
  try:
    triggers.badnets_trigger(shape.image_shape, size=settings["patch_size"],
                             position=settings["patch_position"],
                             pattern=settings["patch_pattern"] or
                             "checkerboard")
  except ValueError as error:
    field = ("patch_position" if settings["patch_position"] is not None
             else "patch_size")
    fields.fail(field, settings[field], "the patch does not fit the "
                f"{shape.image_shape[0]}x{shape.image_shape[1]} images "
                f"({error})")


def _config_fields(config_class) -> tuple[str, ...]:
  return tuple(field.name for field in dataclasses.fields(config_class))


def watermark(config, shape: DataShape | None) -> list[Problem]:
  """The ``watermark`` block of ``experiments/dataset_watermark.py``: a
  poisoned-label watermark or Label-Consistent."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems).block_of("watermark")
  if not fields.choice("method", methods.METHODS):
    return problems
  method = fields.block["method"]
  if method == label_consistent.METHOD:
    fields.known(("method",) +
                 _config_fields(label_consistent.LabelConsistentConfig),
                 "the label_consistent watermark")
    fields.number("epsilon", 0, 1, units="pixel units: 16/255 = 0.0627",
                  optional=True, example=0.0627)
    fields.number("step_size", 0, 1, units="pixel units", optional=True,
                  example=0.0059)
    fields.integer("steps", 0, optional=True, example=30)
    fields.integer("batch_size", 1, optional=True, example=256)
  else:
    fields.known(_config_fields(poisoned_label.PoisonedLabelConfig),
                 f"the {method} watermark")
    fields.number("blend_alpha", 0, 1, low_open=True, optional=True,
                  example=0.1)
    high = min(shape.image_shape[:2]) if shape else None
    fields.integer("wanet_k", 2, high, optional=True, example=4)
    fields.number("wanet_s", 0, low_open=True, optional=True, example=0.5)
    fields.boolean("wanet_noise", optional=True)
    fields.number("wanet_noise_ratio", 0, optional=True, example=2)
    fields.choice("label_draw", poisoned_label.LABEL_DRAWS, optional=True)
    fields.choice("trigger", poisoned_label.TRIGGERS, optional=True,
                  allow_none=True)
    high = shape.num_classes - 1 if shape else None
    fields.sequence("source_classes", 0, high, nonempty=True, optional=True,
                    allow_none=True, example='"(0,1)"')
  fields.number("poison_rate", 0, 1, low_open=True, high_open=True,
                example=0.1)
  if fields.has("target_label"):
    label(fields, "target_label", shape)
  patch(fields, shape)
  return problems


def independent_trigger(config, shape: DataShape | None) -> list[Problem]:
  """The ``independent_trigger`` block: watermark fields that the trigger of
  the Independent-T scenario changes; its patch must fit the images."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  fields = root.block_of("independent_trigger")
  marks = root.get("watermark", optional=True)  # reported by watermark()
  if fields.block is None or marks is MISSING:
    return problems
  fields.known(tuple(marks) + PATCH_FIELDS, "the watermark block")
  if any(fields.has(name) for name in PATCH_FIELDS):
    patch(fields, shape, inherited=marks)
  return problems


def verification(config, shape: DataShape | None = None) -> list[Problem]:
  """The ``verify`` block of black-box dataset ownership verification, and,
  where given, its evaluation classes (``source_classes``) and
  ``independent_trigger_model`` (``experiments/dataset_watermark.py``)."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  fields = root.block_of("verify")
  fields.integer("m", 2, example=100)
  fields.number("tau", 0, 1, example=0.25)
  fields.integer("seed", 0, example=0)
  fields.number("alpha", 0, 1, low_open=True, high_open=True, optional=True,
                example=0.01)
  high = shape.num_classes - 1 if shape else None
  if fields.sequence("source_classes", 0, high, nonempty=True,
                     optional=True, example='"(0,)"') and fields.has(
                         "source_classes"):
    _evaluated_classes(root, fields)
  fields.boolean("independent_trigger_model", optional=True)
  return problems


def _evaluated_classes(root: Fields, fields: Fields) -> None:
  """``verify.source_classes`` are classes the watermark poisons, and not
  the target of a targeted watermark (the UBW paper measures its targeted
  baselines, target y_t = 1, on source class 0)."""
  classes = {int(c) for c in fields.block["source_classes"]}
  block = root.get("watermark", optional=True)  # reported by watermark()
  marks = Fields(None if block is MISSING else block, "watermark", [])
  target = marks.get("target_label", optional=True)
  targeted = marks.get("method", optional=True) in (
      poisoned_label.TARGETED_METHODS + (label_consistent.METHOD,))
  if targeted and target in classes:
    fields.fail("source_classes", fields.block["source_classes"],
                f"holds the target label {target} of the "
                f"{marks.block['method']} watermark, whose triggered "
                "images of the target class say nothing; measure on other "
                "classes (the UBW paper: source class 0, target 1), e.g. "
                '--config.verify.source_classes="(0,)" with '
                "--config.watermark.target_label=1.")
  poisoned = marks.get("source_classes", optional=True)
  if isinstance(poisoned, (list, tuple)) and not classes <= set(poisoned):
    fields.fail("source_classes", fields.block["source_classes"],
                f"holds classes {sorted(classes - set(poisoned))} that "
                f"watermark.source_classes={tuple(poisoned)} does not "
                "poison; measure on poisoned classes, e.g. "
                f'--config.verify.source_classes="({poisoned[0]},)".')


def ablation(config) -> list[Problem]:
  """The ``ablation`` block of ``experiments/ablate_ubw_p.py`` (UBW-P arms
  of CNN widths and label draws, measured after each epoch count)."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  method = root.block_of("watermark").get("method")
  if method is not MISSING and method != "ubw_p":
    root.fail("watermark.method", method, "the ablation measures UBW-P; use "
              "--config=configs/dataset_watermark.py:ubw_p,DATASET, e.g. "
              "ubw_p,digits,runlocal.")
  model = root.get("model")
  if model is not MISSING and model != "cnn":
    root.fail("model", model, "the arms set the CNN's width; use cnn.")
  schedule = root.block_of("train").get("schedule")
  if schedule is not MISSING and (
      schedule not in recipe.RESUMABLE_SCHEDULES):
    root.fail("train.schedule", schedule, "depends on the number of epochs; "
              "use one of " + ", ".join(recipe.RESUMABLE_SCHEDULES) +
              ", e.g. --config.train.schedule=step.")
  fields = root.block_of("ablation")
  fields.sequence("epochs", 1, increasing=True, nonempty=True,
                  example='"(5,10,20)"')
  arms = fields.block_of("arms")
  names = tuple(arms.block or ())
  for name in names:
    arm = arms.block_of(name)
    arm.known(("width", "label_draw"), "an arm")
    arm.integer("width", 1, example=16)
    arm.choice("label_draw", poisoned_label.LABEL_DRAWS)
  only = fields.get("only")
  if only is MISSING:
    return problems
  chosen = [name for name in str(only).split(",") if name]
  unknown = sorted(set(chosen) - set(names))
  if not isinstance(only, str) or unknown:
    fields.fail("only", only, "must be a comma list of arms from " +
                ", ".join(names) + " (empty for all)" +
                fields.example("only", names[0] if names else None))
  return problems
