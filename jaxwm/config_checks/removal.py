"""Checks of the blocks ``configs/removal.py`` adds: the row, the
trigger-set ``watermark`` of the content, noise and unrelated rows,
``removal``, ``defenses`` and ``detectors``.

The rows (``ROWS``) are the variants ``experiments/removal.py`` takes; the
blocks of the launcher that owns a row's model are checked by that
launcher's checks (:func:`jaxwm.config_checks.launchers.removal`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from jaxwm.config_checks.core import Fields, MISSING, Problem, is_integer
from jaxwm.config_checks.training import DataShape
from jaxwm.defenses import detector_suite
from jaxwm.defenses import repairs
from jaxwm.watermark import trigger_watermarks

DATASET_ROWS = ("badnets", "ubw_p")
CRAFTED_ROWS = ("ubw_c",)
MODEL_ROWS = ("adi",)
TRIGGER_ROWS = trigger_watermarks.KINDS
BENIGN = "benign"
ROWS = DATASET_ROWS + CRAFTED_ROWS + MODEL_ROWS + TRIGGER_ROWS + (BENIGN,)


def row(config) -> tuple[list[Problem], str | None]:
  """(the problems of ``row``, the row or None when it is not one)."""
  problems: list[Problem] = []
  fields = Fields(config, "", problems)
  if fields.choice("row", ROWS) and fields.get("row") is not MISSING:
    return problems, config.row
  return problems, None


def trigger_watermark(config, shape: DataShape | None) -> list[Problem]:
  """The ``watermark`` block of a content, noise or unrelated row."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  fields = root.block_of("watermark")
  if fields.choice("kind", TRIGGER_ROWS) and fields.has("kind") and (
      fields.block["kind"] != config.get("row")):
    fields.fail("kind", fields.block["kind"],
                f"must be the row, {config.get('row')!r}; choose the row "
                "with the variant, e.g. --config=configs/removal.py:"
                f"{fields.block['kind']},digits,runlocal.")
  high = None if shape is None else shape.num_classes - 1
  fields.integer("target_label", 0, high, example=1)
  fields.integer("num_triggers", 1, example=100)
  batch = Fields(config, "", []).block_of("train").get("batch_size")
  fields.integer("triggers_per_batch", 1,
                 batch - 1 if is_integer(batch) and batch > 1 else None,
                 example=8)
  fields.integer("trigger_seed", 0, allow_none=True, example=0)
  fields.number("alpha", 0, 1, low_open=True, high_open=True, example=0.01)
  fields.number("eps", 0, 0.5, high_open=True, example=0.1)
  kind = fields.get("kind", optional=True)
  if kind == trigger_watermarks.CONTENT:
    text = fields.get("text")
    if text is not MISSING and not (isinstance(text, str) and text):
      fields.fail("text", text, "must be a non-empty string, e.g. "
                  "--config.watermark.text=TEST.")
  elif kind == trigger_watermarks.NOISE:
    fields.number("noise_std", 0, low_open=True, example=0.3)
  return problems


def _changed(given: Any, defaults: Any, prefix: str = "") -> dict[str, Any]:
  """The dotted fields of ``given`` (nested mappings) that differ from the
  dataclass ``defaults``: what a user changed."""
  changed = {}
  for name, value in given.items():
    default = getattr(defaults, name, MISSING)
    if isinstance(value, Mapping) and dataclasses.is_dataclass(default):
      changed.update(_changed(value, default, f"{prefix}{name}."))
    elif value != default:
      changed[prefix + name] = value
  return changed


def _settings(fields: Fields, field: str, given: Mapping[str, Any],
              defaults: Any, make: Callable[[], Any]) -> None:
  """``make()`` builds the settings ``given`` in ``field``; its error is
  reported with the fields changed from ``defaults``."""
  try:
    make()
  except (TypeError, ValueError) as error:
    fields.fail(field, _changed(given, defaults), f"is refused: {error}")


def removal(config) -> list[Problem]:
  """``removal``, the ``defenses`` its columns name, and ``detectors``."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  removal_block = root.block_of("removal")
  removal_block.number("clean_fraction", 0, 1, low_open=True,
                       high_open=True, example=0.1)
  removal_block.sequence("pruning_rates", 0, 1, integer=False,
                         high_open=True, increasing=True, nonempty=True,
                         example="(0.0,0.5,0.9)")
  removal_block.boolean("detectors")
  defenses = root.block_of("defenses")
  names = tuple(defenses.block or ())
  if removal_block.names("columns", names, nonempty=False):
    for column in config.removal.columns:
      block = defenses.block_of(column)
      if block.choice("repair", tuple(repairs.REPAIRS)):
        settings = block.get("settings")
        if settings is not MISSING:
          name, given = block.block["repair"], settings.to_dict()
          _settings(block, "settings", given, repairs.make_settings(name),
                    lambda n=name, g=given: repairs.make_settings(n, g))
  if root.block_of("detectors").block is not None:
    given, defaults = (config.detectors.to_dict(),
                       detector_suite.DetectorSuiteConfig())
    _settings(root, "detectors", given, defaults,
              lambda: repairs.with_overrides(defaults, given, "detectors"))
  return problems

