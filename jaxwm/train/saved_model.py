"""Saved models: a :class:`TrainedModel` back without training it again.

:func:`load_model` reads either

* a training run's folder: the ``--workdir`` of ``experiments/train.py``
  (its checkpoints are in ``model/``), or any folder that
  :func:`jaxwm.train.recipe.train_model` checkpointed into (a launcher's
  model folder). The newest complete checkpoint is read after its SHA-256
  manifest is checked (:mod:`jaxwm.train.checkpoint`), and the network is
  rebuilt from the :class:`ModelSpec` each checkpoint keeps; or
* an export, two files that need neither the training code's config nor
  Orbax::

      PREFIX.msgpack   the variables (parameters, batch statistics), in
                       Flax's msgpack serialization
      PREFIX.json      {"format", "model": the ModelSpec (name, kwargs,
                       num_classes, image_shape, dtype),
                       "sha256": {"PREFIX.msgpack": hex digest}}

  :func:`export_model` returns the SHA-256 of ``PREFIX.json``, which pins
  both files: pass it to ``load_model(PREFIX, digest=...)`` to refuse files
  replaced since, manifest and all. Without it a truncated or modified
  ``PREFIX.msgpack`` is still refused by the hash ``PREFIX.json`` holds.

Neither path unpickles anything: msgpack decodes arrays from their dtype
name, shape and bytes. The variables read must have exactly the tree,
shapes and dtypes of the rebuilt network, or loading fails naming the
first difference.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxwm import fields
from jaxwm.secure_files import (TamperedFileError, atomic_write,
                                 read_bytes, sha256_hex)
from jaxwm.train import sharding
from jaxwm.train import step as step_lib
from jaxwm.train.checkpoint import Checkpointer
from jaxwm.train.state import TrainState
from jaxwm.train.trained_model import ModelSpec, TrainedModel

FORMAT = "jaxwm.saved_model/v1"
# The checkpoint metadata entry holding the ModelSpec.
MODEL_SPEC = "model_spec"
WEIGHTS_SUFFIX, DESCRIPTION_SUFFIX = ".msgpack", ".json"
# The sub-folder of experiments/train.py's --workdir that holds its model.
_TRAIN_LAUNCHER_FOLDER = "model"


def _export_paths(prefix: str | os.PathLike) -> tuple[str, str]:
  """(PREFIX.msgpack, PREFIX.json), for a prefix given with or without
  either suffix."""
  prefix = os.fspath(prefix)
  for suffix in (WEIGHTS_SUFFIX, DESCRIPTION_SUFFIX):
    if prefix.endswith(suffix):
      prefix = prefix[:-len(suffix)]
  return prefix + WEIGHTS_SUFFIX, prefix + DESCRIPTION_SUFFIX


def export_model(trained: TrainedModel, prefix: str | os.PathLike) -> str:
  """Writes PREFIX.msgpack and PREFIX.json (module docstring).

  Args:
    trained: a model of :func:`jaxwm.train.recipe.train_model` or of
      :func:`load_model` (one with a ``spec``).
    prefix: the path without suffix, e.g. ``/tmp/suspect``.

  Returns:
    The hex SHA-256 of PREFIX.json; keep it to check the files on loading.

  Raises:
    ValueError: ``trained`` has no ``spec`` (it was built by hand).
  """
  if trained.spec is None:
    raise ValueError(
        "this TrainedModel has no ModelSpec (it was not made by "
        "recipe.train_model or load_model), so its network could not be "
        "rebuilt; pass spec=ModelSpec(name, kwargs, num_classes, "
        "image_shape) when constructing it.")
  weights_path, description_path = _export_paths(prefix)
  variables = jax.tree.map(np.asarray, jax.device_get(trained.variables))
  weights = flax.serialization.msgpack_serialize(
      flax.serialization.to_state_dict(variables))
  description = json.dumps({
      "format": FORMAT, "model": trained.spec.to_json(),
      "sha256": {os.path.basename(weights_path): sha256_hex(weights)}},
                           sort_keys=True, indent=1).encode()
  os.makedirs(os.path.dirname(os.path.abspath(weights_path)), exist_ok=True)
  atomic_write(weights_path, weights)
  atomic_write(description_path, description)
  return sha256_hex(description)


def load_model(path: str | os.PathLike, digest: str | None = None, *,
               eval_batch_size: int = 1000) -> TrainedModel:
  """The model saved at ``path``, ready to query, without training.

  Its ``predict_proba`` and ``logits`` equal those of the model that was
  trained, bit for bit, on the same devices.

  Args:
    path: a training run's folder, or an export's prefix (module
      docstring).
    digest: for an export, the hex digest :func:`export_model` returned;
      PREFIX.json must hash to it. Checkpoint folders are checked against
      their own manifests and take no digest.
    eval_batch_size: images per device call when querying.

  Raises:
    FileNotFoundError: ``path`` holds no checkpoint and no export.
    TamperedFileError: a file does not match its SHA-256 (or ``digest``),
      cannot be parsed, or holds variables that do not fit its network.
    CorruptedCheckpointError: a checkpoint file does not match its
      manifest.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if digest is not None:
      raise ValueError(
          f"{path} is a checkpoint folder, whose files are checked against "
          "their own manifests; a digest applies to an exported model. "
          "Leave the digest out, or export the model and load the export.")
    spec, variables, where = _read_checkpoints(path)
  else:
    spec, variables, where = _read_export(path, digest)
  model = spec.build()
  _check_fits(variables, model, spec, where)
  mesh = sharding.make_mesh()
  variables = sharding.replicate(jax.tree.map(jnp.asarray, variables), mesh)
  params = variables.pop("params")
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     model_state=variables, opt_state=(),
                     rng=jnp.zeros((2,), jnp.uint32))
  return TrainedModel(model, state, mesh,
                      step_lib.make_predict_fn(model, mesh), eval_batch_size,
                      spec)


def _checkpoint_folder(path: str) -> str:
  """``path`` or its ``model/`` sub-folder, whichever holds checkpoints."""
  for folder in (path, os.path.join(path, _TRAIN_LAUNCHER_FOLDER)):
    if os.path.isdir(os.path.join(folder, "checkpoints")):
      return folder
  raise FileNotFoundError(
      f"{path} holds no jaxwm checkpoints (neither {path}/checkpoints nor "
      f"{path}/{_TRAIN_LAUNCHER_FOLDER}/checkpoints exists); pass the "
      "--workdir of experiments/train.py, a folder recipe.train_model "
      "checkpointed into, or the PREFIX of an exported model.")


def _read_checkpoints(path: str) -> tuple[ModelSpec, dict[str, Any], str]:
  """(spec, variables, where) of the newest complete checkpoint."""
  folder = _checkpoint_folder(path)
  checkpointer = Checkpointer(folder)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise FileNotFoundError(
          f"{folder}/checkpoints holds no complete checkpoint (training was "
          "stopped before its first save); train again with the same "
          "--workdir to finish it.")
    metadata = checkpointer.read_metadata(step)
    where = f"the checkpoint at step {step} in {folder}"
    if MODEL_SPEC not in metadata:
      raise ValueError(
          f"{where} does not record its model (it was made by an earlier "
          "jaxwm or outside recipe.train_model); train it again with this "
          "jaxwm, or rebuild it in Python and use export_model.")
    spec = ModelSpec.from_json(metadata[MODEL_SPEC], where)
    _warn_if_unfinished(metadata, where)
    state = checkpointer.restore_as_saved(step)
  finally:
    checkpointer.close()
  return spec, {"params": state["params"], **(state["model_state"] or {})}, \
      where


def _warn_if_unfinished(metadata: dict[str, Any], where: str) -> None:
  epochs = metadata.get("identity", {}).get("train", {}).get("num_epochs")
  if epochs is not None and metadata.get("epoch", epochs) < epochs:
    logging.warning("%s is from epoch %s of %s: the run was stopped before "
                    "it finished; loading it as it is.", where,
                    metadata.get("epoch"), epochs)


_EXPORT_FILES_HINT = (
    "an exported model is PREFIX.msgpack and PREFIX.json side by side "
    "(export_model writes both), and a saved model folder holds "
    "checkpoints/.")


def _read(path: str) -> bytes:
  return read_bytes(path, _EXPORT_FILES_HINT)


def _read_export(prefix: str, digest: str | None
                 ) -> tuple[ModelSpec, dict[str, Any], str]:
  """(spec, variables, where) of an export, after checking its hashes."""
  weights_path, description_path = _export_paths(prefix)
  description = _read(description_path)
  if digest is not None:
    digest = fields.hex_digest(digest, "digest", "that export_model returned")
    if not hmac.compare_digest(sha256_hex(description).encode(),
                               digest.encode()):
      raise TamperedFileError(
          f"{description_path} does not hash to the digest you kept "
          f"({digest}): the export was replaced or modified since it was "
          "written. Use the exporter's copy.")
  try:
    record = json.loads(description)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
      raise ValueError(f"its format is not {FORMAT!r}")
    expected = record["sha256"][os.path.basename(weights_path)]
  except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
    raise TamperedFileError(
        f"{description_path} is not a jaxwm model description ({e}); use "
        "the files export_model wrote, under their original names.") from None
  weights = _read(weights_path)
  if not hmac.compare_digest(sha256_hex(weights).encode(),
                             str(expected).encode()):
    raise TamperedFileError(
        f"{weights_path} does not match the SHA-256 in {description_path}: "
        "the file was truncated or modified. Copy the export again.")
  try:
    spec = ModelSpec.from_json(record.get("model"), description_path)
    variables = flax.serialization.msgpack_restore(weights)
  except ValueError as e:
    raise TamperedFileError(str(e)) from None
  return spec, variables, weights_path


def _check_fits(variables: Any, model, spec: ModelSpec, where: str) -> None:
  """Raises TamperedFileError unless ``variables`` has the tree, shapes and
  dtypes of ``model``'s variables for inputs of ``spec.image_shape``."""
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0),
                         jnp.zeros((1, *spec.image_shape), jnp.float32),
                         train=False))
  wanted = flax.traverse_util.flatten_dict(dict(expected), sep="/")
  found = (flax.traverse_util.flatten_dict(dict(variables), sep="/")
           if isinstance(variables, dict) else {})
  for name in sorted(set(wanted) | set(found)):
    want = wanted.get(name)
    have = found.get(name)
    want_text = "absent" if want is None else f"{want.dtype}{list(want.shape)}"
    have_text = ("absent" if have is None else
                 f"{np.asarray(have).dtype}{list(np.shape(have))}")
    if want_text != have_text:
      raise TamperedFileError(
          f"{where} does not fit a {spec.name} model for {spec.num_classes} "
          f"classes and images {list(spec.image_shape)}: {name} is "
          f"{have_text} where the model needs {want_text}. The file was "
          "modified or its description belongs to another model.")
