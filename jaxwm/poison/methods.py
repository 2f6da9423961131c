"""The dataset watermarks by the names the configs give them.

* :data:`METHODS`: the watermarks :func:`mark_dataset` applies in one pass
  over the training set (BadNets, Blended, WaNet, UBW-P and
  Label-Consistent);
* :data:`ALIGNMENT_WATERMARKS`: the clean-label watermarks crafted by
  gradient alignment (UBW-C, Sleeper Agent), for
  :func:`jaxwm.poison.alignment_watermark.mark`.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

from jaxwm.data.dataset import Dataset
from jaxwm.poison import label_consistent
from jaxwm.poison import poisoned_label
from jaxwm.poison import sleeper_agent
from jaxwm.poison import triggers
from jaxwm.poison import ubw_c
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.train import recipe

METHODS = poisoned_label.METHODS + (label_consistent.METHOD,)
ALIGNMENT_WATERMARKS = {method.name: method
                        for method in (ubw_c.METHOD, sleeper_agent.METHOD)}


def _fields(watermark: Mapping[str, Any]) -> dict[str, Any]:
  """The watermark's fields as a dict; its ``method`` must be one of
  :data:`METHODS`."""
  fields = dict(watermark.to_dict() if hasattr(watermark, "to_dict")
                else watermark)
  method = fields.get("method")
  if method not in METHODS:
    raise ValueError(f"unknown watermark method {method!r}; use one of "
                     f"{METHODS}.")
  return fields


def watermark_trigger(watermark: Mapping[str, Any],
                      image_shape: tuple[int, ...],
                      key: jax.Array) -> triggers.Trigger:
  """The trigger :func:`mark_dataset` stamps for ``watermark`` and ``key``,
  without marking anything (e.g. to query a model with another owner's
  trigger).

  Args:
    watermark: the fields of the method's config (``method`` included).
    image_shape: (H, W, C) of the images.
    key: the jax.random key :func:`mark_dataset` is (or would be) given.
  """
  fields = _fields(watermark)
  if fields["method"] != label_consistent.METHOD:
    return poisoned_label.watermark_trigger(fields, image_shape, key)
  del fields["method"]
  return label_consistent.watermark_trigger(fields, image_shape)


def mark_dataset(dataset: Dataset, watermark: Mapping[str, Any],
                 key: jax.Array,
                 surrogate: recipe.TrainedModel | None = None
                 ) -> tuple[Dataset, WatermarkKey]:
  """Marks ``dataset`` with the watermark ``watermark["method"]`` names.

  Args:
    dataset: the benign training set.
    watermark: the fields of the method's config (``method`` included), as
      a dict or ConfigDict; ``method`` one of :data:`METHODS`.
    key: jax.random key of the watermark.
    surrogate: the model the Label-Consistent PGD attacks; unused otherwise.

  Returns:
    (marked dataset, WatermarkKey).
  """
  fields = _fields(watermark)
  if fields["method"] != label_consistent.METHOD:
    return poisoned_label.mark(dataset, fields, key)
  if surrogate is None:
    raise ValueError("the label_consistent watermark needs a surrogate model "
                     "trained on benign data for its PGD; pass surrogate=.")
  del fields["method"]
  return label_consistent.mark(dataset, fields, key, surrogate.model,
                               surrogate.variables)
