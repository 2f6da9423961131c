"""A run's identity: what determines a trained model, a poison or a verdict.

Every cache jaxwm keeps on disk (training checkpoints, a crafting run, the
curves and verdicts of the launchers) is stored with an identity record: a
JSON mapping of the fields that determine it, the fields themselves and not
only their hash. Before anything is restored or reused, the record on disk
is compared field by field with the record of the run asking for it
(:func:`check`). On any difference, and for a cache without a record,
:class:`StaleRunError` names every differing field with both values and
nothing is reused. The launchers also name their folders by the
fingerprint of the same fields (:func:`folder_fingerprint`), so that a
changed config goes to a new folder and never meets the old cache; the
check catches what the folder name cannot see (the data's contents, a
folder passed by hand).

Code versions (:func:`code_versions`) are part of every record: the jaxwm
version and the format of the record. A new jaxwm version is another run,
as its code may train differently; new JAX, Flax or Orbax versions are not
(Orbax reads the checkpoints of its earlier versions, and their numerical
changes are not treated as a different run).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np

import jaxwm
from jaxwm.fingerprint import array_digest, fingerprint

# 1 was the checkpoint metadata before identity records (no longer restored).
RECORD_FORMAT = 2
# Fields of ``config.train`` that do not change the trained model.
_BOOKKEEPING = ("checkpoint_every_epochs", "log_every_steps")
_ABSENT = "(absent)"
_MAX_SHOWN = 100


class StaleRunError(ValueError):
  """A cache on disk was made by another run than the one asking for it."""


def code_versions() -> dict[str, Any]:
  """The code that made a record: ``{"jaxwm": version, "record_format"}``."""
  return {"jaxwm": jaxwm.__version__, "record_format": RECORD_FORMAT}


@functools.cache
def source_digest() -> str:
  """SHA-256 of jaxwm's Python sources (each file's path and bytes, in
  path order): for caches that are cheap to redo and must follow every
  change of the code, such as verdicts, where a version number would let a
  changed test reuse the old test's decisions."""
  root = pathlib.Path(jaxwm.__file__).parent
  digest = hashlib.sha256()
  for path in sorted(root.rglob("*.py")):
    digest.update(path.relative_to(root).as_posix().encode() + b"\0")
    digest.update(hashlib.sha256(path.read_bytes()).digest())
  return digest.hexdigest()


def training_fields(config) -> dict[str, Any]:
  """The config fields that determine a model of ``recipe.train_model``.

  ``seed``, ``dataset``, ``data_dir``, ``model``, ``model_kwargs``,
  ``train_fraction`` and the ``train`` block without its bookkeeping
  (``checkpoint_every_epochs``, ``log_every_steps``).
  """
  train = {name: value for name, value in config.train.to_dict().items()
           if name not in _BOOKKEEPING}
  return {"seed": config.seed, "dataset": config.dataset,
          "data_dir": config.data_dir, "model": config.model,
          "model_kwargs": config.model_kwargs.to_dict(),
          "train_fraction": config.train_fraction, "train": train}


def folder_fingerprint(config, *parts: Any) -> str:
  """The fingerprint of a model folder: :func:`training_fields`, the code
  versions and ``parts`` (what else the model depends on)."""
  return fingerprint(training_fields(config), code_versions(), *parts)


def dataset_identity(dataset, labels: np.ndarray | None = None
                     ) -> dict[str, Any]:
  """``{"examples", "num_classes", "images", "labels"}`` of a Dataset.

  ``images`` and ``labels`` are :func:`jaxwm.fingerprint.array_digest`
  SHA-256 digests; ``labels`` replaces the dataset's labels (e.g. the
  training targets, int [N] or soft float [N, K]).
  """
  labels = dataset.labels if labels is None else labels
  return {"examples": len(dataset), "num_classes": dataset.num_classes,
          "images": array_digest(dataset.images),
          "labels": array_digest(labels)}


def canonical(record: Mapping[str, Any]) -> dict[str, Any]:
  """``record`` as it reads back from JSON (tuples as lists, sorted keys;
  values JSON cannot encode as their ``str``)."""
  return json.loads(json.dumps(record, sort_keys=True, default=str))


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  fields = {}
  for name, value in record.items():
    if isinstance(value, Mapping) and value:
      fields.update(_flatten(value, f"{prefix}{name}."))
    else:
      fields[f"{prefix}{name}"] = value
  return fields


def _show(value: Any) -> str:
  text = value if value is _ABSENT else json.dumps(value, sort_keys=True)
  return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]
                ) -> list[tuple[str, Any, Any]]:
  """``(field, saved value, current value)`` for every differing field.

  Nested mappings are compared field by field (``train.learning_rate``);
  a field present on one side only has the value ``"(absent)"`` on the
  other. Both records are compared as JSON reads them back.
  """
  saved, current = _flatten(canonical(saved)), _flatten(canonical(current))
  return [(name, saved.get(name, _ABSENT), current.get(name, _ABSENT))
          for name in sorted(set(saved) | set(current))
          if saved.get(name, _ABSENT) != current.get(name, _ABSENT)]


def check(saved: Mapping[str, Any] | None, current: Mapping[str, Any], *,
          what: str, folder: str) -> None:
  """Raises StaleRunError unless ``saved`` records the same run as ``current``.

  Args:
    saved: the identity record on disk; None when there is none.
    current: the record of this run.
    what: names the cache in the message, e.g. ``"the checkpoint"``.
    folder: the file or folder to delete to make the cache again.
  """
  fix = (f"jaxwm never restores or reuses across a difference: use a new "
         f"--workdir, or delete {folder} to make it again.")
  if saved is None:
    raise StaleRunError(
        f"{what} in {folder} has no identity record (it was made before "
        f"jaxwm kept one), so it cannot be checked against this run; {fix}")
  changed = differences(saved, current)
  if changed:
    lines = "\n".join(f"  {name}: {_show(old)} (on disk) != {_show(new)} "
                      "(this run)" for name, old, new in changed)
    raise StaleRunError(
        f"{what} in {folder} was made by another run; they differ in "
        f"{len(changed)} field(s):\n{lines}\n{fix}")


def write_json(path: str, identity: Mapping[str, Any], value: Any) -> None:
  """Writes ``{"identity", "value"}`` to ``path`` atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump({"identity": canonical(identity), "value": value}, f, indent=1)
  os.replace(path + ".tmp", path)


def read_json(path: str, identity: Mapping[str, Any], *, what: str) -> Any:
  """The value :func:`write_json` kept in ``path`` for the same ``identity``.

  Returns:
    The value, or None when ``path`` does not exist.

  Raises:
    StaleRunError: the file was written for another identity, or without
      one.
  """
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  saved = record.get("identity") if isinstance(record, dict) else None
  check(saved, identity, what=what, folder=path)
  return record["value"]
