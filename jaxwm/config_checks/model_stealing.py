"""Checks of the blocks of ``configs/model_stealing.py``: ``method``,
``split``, ``attacks``, ``steal``, ``independent`` and the method's own
blocks (MOVE's ``move`` and ``meta``; BadNets' ``watermark`` and
``verify``, checked as the dataset watermark's; Entangled Watermarks'
``entangled``; gradient matching's ``poison``, ``watermark`` and
``verify``; Dataset Inference's ``dataset_inference``)."""

from __future__ import annotations

from typing import Any, Callable

from jaxwm import steal
from jaxwm.config_checks import dataset_watermarks
from jaxwm.config_checks.core import Fields, MISSING, Problem
from jaxwm.config_checks.training import DataShape
from jaxwm.models import registry
from jaxwm.poison import alignment_watermark
from jaxwm.watermark import dataset_inference, entangled, move

MOVE_METHODS = ("move_whitebox", "move_blackbox")
DATASET_INFERENCE_METHODS = ("dataset_inference_whitebox",
                             "dataset_inference_blackbox")
METHODS = (*MOVE_METHODS, "badnets", "entangled", "gradient_matching",
           *DATASET_INFERENCE_METHODS)


def _builds(root: Fields, field: str, values: dict[str, Any],
            build: Callable[[dict[str, Any]], Any], what: str) -> None:
  """``build(values)`` accepts the block ``field`` (its settings' own
  checks: unknown names, out-of-range values)."""
  try:
    build(values)
  except (TypeError, ValueError) as error:
    root.fail(field, values, f"is not a valid {what} setting: {error}")


def _move(root: Fields) -> None:
  fields = root.block_of("move")
  fields.choice("setting", (move.WHITE_BOX, move.BLACK_BOX))
  fields.integer("seed", 0, example=0)
  fields.number("transform_rate", 0, 1, low_open=True, example=0.1)
  fields.number("verification_fraction", 0, 1, low_open=True,
                high_open=True, example=0.2)
  fields.integer("m_white_box", 2, example=10)
  fields.integer("m_black_box", 2, example=100)
  fields.number("alpha", 0, 1, low_open=True, high_open=True, example=0.01)
  if fields.block is not None:
    values = {name: value for name, value in fields.block.to_dict().items()
              if name != "setting"}
    _builds(root, "move", values, move.MoveConfig.from_dict, "MOVE")


def _dataset_inference(root: Fields) -> None:
  fields = root.block_of("dataset_inference")
  fields.choice("setting", dataset_inference.pipeline.SETTINGS)
  fields.integer("regressor_samples", 2, example=500)
  fields.integer("m", 2, example=50)
  fields.number("alpha", 0, 1, low_open=True, high_open=True, example=0.01)
  if fields.block is not None:
    _builds(root, "dataset_inference", fields.block.to_dict(),
            dataset_inference.DatasetInferenceConfig.from_dict,
            "Dataset Inference")


def _independent(root: Fields) -> None:
  fields = root.block_of("independent")
  fields.integer("seed_offset", 1, example=1)
  name = fields.get("model")
  if name is not MISSING and name is not None and (
      name not in registry.model_names()):
    fields.fail("model", name, "must be None (the victim's architecture) "
                f"or one of {', '.join(registry.model_names())}.")


def _block_with_classes(root: Fields, block: str, classes: tuple[str, ...],
                        shape: DataShape | None, build, what: str) -> None:
  """Checks that the fields ``classes`` of block ``block`` are classes of
  the data and that ``build(block as a dict)`` accepts the block."""
  fields = root.block_of(block)
  for name in classes:
    dataset_watermarks.label(fields, name, shape)
  if fields.block is not None:
    _builds(root, block, fields.block.to_dict(), build, what)


def model_stealing(config, shape: DataShape | None) -> list[Problem]:
  """Every block of ``experiments/model_stealing.py`` but the data and the
  training recipe (``shape``: the data's, None when it cannot load)."""
  problems: list[Problem] = []
  root = Fields(config, "", problems)
  root.choice("method", METHODS)
  root.block_of("split").number("attacker_fraction", 0, 1, low_open=True,
                                high_open=True, example=0.5)
  root.names("attacks", steal.ATTACKS)
  if root.get("steal") is not MISSING:
    _builds(root, "steal", config.steal.to_dict(),
            steal.StealConfig.from_dict, "model-stealing")
  _independent(root)
  method = root.get("method")
  if method == "entangled":
    _block_with_classes(root, "entangled", ("source_class", "target_class"),
                        shape, entangled.EntangledConfig.from_dict,
                        "Entangled Watermarks")
    return problems
  if method == "gradient_matching":
    _block_with_classes(
        root, "watermark", ("source_class", "target_label"), shape,
        lambda values: alignment_watermark.AlignmentWatermarkConfig(**values),
        "gradient-matching watermark")
    return problems + dataset_watermarks.verification(config)
  if method in MOVE_METHODS:
    meta = root.block_of("meta")
    meta.integer("num_models", 1, example=3)
    meta.integer("num_references", 2, example=8)
    _move(root)
    return problems
  if method in DATASET_INFERENCE_METHODS:
    _dataset_inference(root)
    return problems
  return (problems + dataset_watermarks.watermark(config, shape) +
          dataset_watermarks.verification(config, shape))
