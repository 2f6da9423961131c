"""The model repairs by name: what a launcher calls.

Each repair is ``repair(config, model, clean, settings, *, workdir=None,
stream=0) -> TrainedModel``: the suspect model (a
:class:`jaxwm.train.recipe.TrainedModel`), the defender's clean data and
the repair's settings dataclass, to a model of the same class and
interface. :func:`run_repair` calls one by name, with settings built from
a mapping of overrides by :func:`make_settings`::

    settings = repairs.make_settings("wild", {"weight": 2.0})
    repaired = repairs.run_repair("wild", config, model, clean, settings)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from jaxwm.data.dataset import Dataset
from jaxwm.defenses import fine_pruning
from jaxwm.defenses import fine_tuning
from jaxwm.defenses import mode_connectivity
from jaxwm.defenses import nad
from jaxwm.defenses import pruning
from jaxwm.defenses import wild
from jaxwm.train import recipe


@dataclasses.dataclass(frozen=True)
class Repair:
  """A repair function and its settings dataclass."""

  run: Callable[..., recipe.TrainedModel]
  settings: type


REPAIRS = {
    "fine_tuning": Repair(fine_tuning.repair, fine_tuning.FineTuneConfig),
    "pruning": Repair(pruning.repair, pruning.PruneConfig),
    "fine_pruning": Repair(fine_pruning.repair, fine_pruning.FinePruneConfig),
    "wild": Repair(wild.repair, wild.WildConfig),
    "nad": Repair(nad.repair, nad.NadConfig),
    "mcr": Repair(mode_connectivity.repair, mode_connectivity.McrConfig),
}


def get_repair(name: str) -> Repair:
  if name not in REPAIRS:
    raise ValueError(f"unknown repair {name!r}; use one of "
                     f"{', '.join(REPAIRS)}.")
  return REPAIRS[name]


def with_overrides(settings: Any, overrides: Mapping[str, Any],
                   where: str) -> Any:
  """The frozen dataclass ``settings`` with ``overrides`` (nested mappings
  for nested dataclasses); ``where`` names it in the error of an unknown
  field."""
  fields = {field.name for field in dataclasses.fields(settings)}
  changes = {}
  for name, value in overrides.items():
    if name not in fields:
      raise ValueError(f"{where} has no setting {name!r}; its settings are "
                       f"{sorted(fields)}.")
    current = getattr(settings, name)
    if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
      value = with_overrides(current, value, f"{where}.{name}")
    changes[name] = value
  return dataclasses.replace(settings, **changes)


def make_settings(name: str,
                  overrides: Mapping[str, Any] | None = None) -> Any:
  """The settings of repair ``name``: its defaults with ``overrides``
  (nested mappings for nested settings, e.g. ``{"prune": {"rate": 0.8}}``
  for fine-pruning; a ConfigDict's ``to_dict()`` works)."""
  return with_overrides(get_repair(name).settings(), overrides or {}, name)


def run_repair(name: str, config, model: recipe.TrainedModel, clean: Dataset,
               settings: Any = None, *, workdir: str | None = None,
               stream: int = 0) -> recipe.TrainedModel:
  """Runs repair ``name`` (default settings when ``settings`` is None)."""
  repair = get_repair(name)
  settings = repair.settings() if settings is None else settings
  if not isinstance(settings, repair.settings):
    raise TypeError(f"repair {name!r} takes {repair.settings.__name__} "
                    f"settings, got {type(settings).__name__}.")
  return repair.run(config, model, clean, settings, workdir=workdir,
                    stream=stream)
