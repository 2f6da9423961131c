"""The stolen model's architecture and recipe, relative to the victim's.

Attacks that train a student from scratch (distillation, zero-shot,
label- and logit-query) take the training config the caller passes (the
victim's: ``configs/train.py`` fields) and override only what the attack's
settings name; everything left None stays the victim's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

from jaxwm.config_checks.core import is_integer

from jaxwm.models.common import HEAD


def num_classes(model) -> int:
  """K, the width of a jaxwm model's output layer (a TrainedModel's), which
  every student of it shares."""
  return int(model.state.params[HEAD]["bias"].shape[-1])


def check_positive(name: str, value: float | None, *,
                   integer: bool = False) -> None:
  """Raises ValueError unless ``value`` is None or > 0 (an int if asked)."""
  if value is None:
    return
  if integer and not is_integer(value):
    raise ValueError(f"{name} must be an integer, got {value!r}.")
  if not value > 0:
    raise ValueError(f"{name} must be > 0, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class StudentRecipe:
  """The student's architecture and training, where it is not the victim's.

  Attributes:
    model: the student's architecture (a :func:`jaxwm.models.get_model`
      name); None: ``config.model``, the victim's.
    model_kwargs: the architecture's keyword arguments; None: the victim's
      ``config.model_kwargs`` when ``model`` is None, no arguments
      otherwise.
    num_epochs: epochs over the attacker's data; None:
      ``config.train.num_epochs``.
    learning_rate: peak learning rate; None: ``config.train.learning_rate``.
  """

  model: str | None = None
  model_kwargs: Mapping[str, Any] | None = None
  num_epochs: int | None = None
  learning_rate: float | None = None

  def __post_init__(self):
    check_positive("num_epochs", self.num_epochs, integer=True)
    check_positive("learning_rate", self.learning_rate)
    if self.model_kwargs is not None:
      object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))

  def config(self, config) -> ml_collections.ConfigDict:
    """A copy of ``config`` (``configs/train.py`` fields) for the student."""
    derived = config.copy_and_resolve_references()
    if self.model is not None:
      derived.model = self.model
      derived.model_kwargs = ml_collections.ConfigDict(
          dict(self.model_kwargs or {}))
    elif self.model_kwargs is not None:
      derived.model_kwargs = ml_collections.ConfigDict(
          dict(self.model_kwargs))
    if self.num_epochs is not None:
      derived.train.num_epochs = int(self.num_epochs)
    if self.learning_rate is not None:
      derived.train.learning_rate = float(self.learning_rate)
    return derived
