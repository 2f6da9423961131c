"""A trained model with its query helpers, and what rebuilds its network."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from jaxwm import data as jaxwm_data
from jaxwm import fields
from jaxwm.models import get_model, model_names
from jaxwm.train import loop
from jaxwm.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What builds a model's network again: its registry name and arguments.

  Attributes:
    name: the :func:`jaxwm.models.get_model` name, e.g. ``"cnn"``.
    kwargs: its model-specific keyword arguments (JSON values).
    num_classes: K, the width of the logits.
    image_shape: (H, W, C) of the inputs it was trained on.
    dtype: the compute dtype's name, e.g. ``"float32"``.
  """

  name: str
  kwargs: Mapping[str, Any]
  num_classes: int
  image_shape: tuple[int, int, int]
  dtype: str = "float32"

  def build(self):
    """The untrained ``flax.linen.Module``."""
    return get_model(self.name, self.num_classes, dtype=self.dtype,
                     **dict(self.kwargs))

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "kwargs": dict(self.kwargs),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape), "dtype": self.dtype}

  @classmethod
  def from_json(cls, record: Any, where: str) -> "ModelSpec":
    """The inverse of :meth:`to_json`, every field checked.

    Raises:
      ValueError: a field is missing or of the wrong kind; the message
        names ``where``, the field and its value.
    """
    try:
      shape = record["image_shape"]
      if not isinstance(shape, list) or len(shape) != 3:
        raise ValueError(f"image_shape must be [H, W, C], got {shape!r}")
      if not isinstance(record["kwargs"], dict):
        raise ValueError(f"kwargs must be an object, got {record['kwargs']!r}")
      if record["name"] not in model_names():
        raise ValueError(f"name {record['name']!r} is not one of "
                         f"{', '.join(model_names())}")
      return cls(record["name"], record["kwargs"],
                 fields.integer(record["num_classes"], "num_classes", low=2),
                 tuple(fields.integer(d, "image_shape", low=1)
                       for d in shape), str(record["dtype"]))
    except (KeyError, TypeError, ValueError) as e:
      missing = f"the entry {e} is missing" if isinstance(e, KeyError) else e
      raise ValueError(f"{where} holds no valid model description "
                       f"({missing}).") from None


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A trained model with the helpers that metrics and verification need.

  ``spec`` (None for models built outside :func:`jaxwm.train.recipe`) is
  what :func:`jaxwm.train.saved_model.export_model` records beside the
  weights.
  """

  model: Any
  state: TrainState
  mesh: Mesh
  predict_fn: Callable[[Any, jax.Array], jax.Array]
  eval_batch_size: int = 1000
  spec: ModelSpec | None = None

  @property
  def variables(self) -> dict[str, Any]:
    return self.state.variables()

  def logits(self, images: np.ndarray) -> np.ndarray:
    """float32 [N, K] for uint8 images or float images in [0, 1], [N, H, W, C]."""
    return loop.predict_logits(self.predict_fn, self.variables,
                               np.asarray(images), self.eval_batch_size,
                               self.mesh)

  def predict_proba(self, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities float64 [N, K]: the black-box query interface."""
    return np.asarray(jax.nn.softmax(self.logits(images).astype(np.float64)))

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Predicted labels int [N]."""
    return np.argmax(self.logits(images), axis=-1)

  def evaluate(self, dataset: jaxwm_data.Dataset) -> dict[str, float]:
    return loop.evaluate(self.predict_fn, self.variables, dataset,
                         self.eval_batch_size, self.mesh)
