"""Orbax checkpoints with a SHA-256 manifest per saved step.

Orbax writes each step atomically (a temporary directory renamed when
complete). After it finishes, jaxwm hashes every file of the step and writes
``<workdir>/checkpoint_manifests/<step>.json``. On restore the hashes are
checked first: a truncated or modified checkpoint raises
:class:`CorruptedCheckpointError` instead of resuming from bad data. A step
without a manifest (the process died between the two writes) is incomplete
and is skipped in favour of the previous one.

In a multi-process job every process takes part in each save and restore
(Orbax writes each process's shards, in one folder that all of them
reach), process 0 alone writes and prunes the manifests, and no process
returns from :meth:`Checkpointer.save` before the manifest is written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging as std_logging
import os
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from jaxwm import identity as identity_lib


def _quiet_orbax(record: std_logging.LogRecord) -> bool:
  """Drops Orbax's per-save INFO chatter; its warnings and errors still show."""
  return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


class CorruptedCheckpointError(RuntimeError):
  """A saved checkpoint does not match its SHA-256 manifest."""


def _hash_tree(directory: str) -> dict[str, str]:
  digests = {}
  for root, _, files in os.walk(directory):
    for name in sorted(files):
      path = os.path.join(root, name)
      sha = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          sha.update(chunk)
      digests[os.path.relpath(path, directory)] = sha.hexdigest()
  return digests


class Checkpointer:
  """Saves and restores ``(state, metadata)`` pairs under ``workdir``."""

  def __init__(self, workdir: str, max_to_keep: int = 2):
    self._workdir = workdir
    self._directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._manifests = os.path.abspath(
        os.path.join(workdir, "checkpoint_manifests"))
    os.makedirs(self._manifests, exist_ok=True)
    if _quiet_orbax not in logging.get_absl_logger().filters:
      logging.get_absl_logger().addFilter(_quiet_orbax)
    self._verified: set[int] = set()  # steps whose hashes were checked
    self._manager = ocp.CheckpointManager(
        self._directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def _manifest_path(self, step: int) -> str:
    return os.path.join(self._manifests, f"{step}.json")

  def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
    """Writes ``state`` (a pytree of arrays) and JSON ``metadata`` at ``step``."""
    self._verified.discard(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave(metadata)))
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      self._write_manifest(step)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxwm checkpoint {step}")

  def _write_manifest(self, step: int) -> None:
    """Hashes the files of ``step`` and drops the manifests of the steps
    Orbax has deleted."""
    digests = _hash_tree(os.path.join(self._directory, str(step)))
    tmp = self._manifest_path(step) + ".tmp"
    with open(tmp, "w") as f:
      json.dump(digests, f, sort_keys=True)
    os.replace(tmp, self._manifest_path(step))
    for name in os.listdir(self._manifests):
      if name.endswith(".json") and int(name[:-5]) not in self._steps():
        os.remove(os.path.join(self._manifests, name))

  def _steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def complete_steps(self) -> list[int]:
    """The saved steps that are complete (have a manifest), ascending."""
    return [s for s in self._steps() if os.path.exists(self._manifest_path(s))]

  def latest_step(self) -> int | None:
    """The newest complete step (one with a manifest), or None."""
    complete = self.complete_steps()
    return complete[-1] if complete else None

  def verify(self, step: int) -> None:
    """Raises CorruptedCheckpointError unless every file matches its hash."""
    with open(self._manifest_path(step)) as f:
      expected = json.load(f)
    step_dir = os.path.join(self._directory, str(step))
    actual = _hash_tree(step_dir)
    fix = (f"delete {step_dir} and {self._manifest_path(step)} to resume from "
           "an earlier checkpoint, or start in a new --workdir.")
    for name, digest in expected.items():
      if name not in actual:
        raise CorruptedCheckpointError(
            f"checkpoint file {os.path.join(step_dir, name)} is missing; {fix}")
      if not hmac.compare_digest(actual[name], digest):
        raise CorruptedCheckpointError(
            f"checkpoint file {os.path.join(step_dir, name)} does not match its "
            f"SHA-256 (truncated or modified); {fix}")

  def _verify_once(self, step: int) -> None:
    if step not in self._verified:
      self.verify(step)
      self._verified.add(step)

  def read_metadata(self, step: int) -> dict[str, Any]:
    """The JSON metadata of ``step``, after checking its files' hashes;
    to be compared with the run before :meth:`restore` loads the state."""
    self._verify_once(step)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        metadata=ocp.args.JsonRestore()))
    return dict(restored["metadata"])

  def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` into the structure, shapes and shardings of ``like``."""
    self._verify_once(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        metadata=ocp.args.JsonRestore()))
    logging.info("Restored checkpoint %d from %s", step, self._directory)
    return restored["state"], dict(restored["metadata"])

  def resume(self, like: Any, identity: Mapping[str, Any], *, progress: str,
             limit: int, limit_name: str, what: str) -> tuple[Any, int]:
    """(state, progress made): the latest checkpoint's state (restored as
    ``like``) and its metadata's ``progress`` count, after checking that
    the run of record ``identity`` wrote it and that the count is within
    the run's ``limit``; ``(like, 0)`` when there is no checkpoint.

    Args:
      like: the state's structure, shapes and shardings.
      identity: the run's identity record (:mod:`jaxwm.identity`).
      progress: the metadata field counting the work done, e.g. "epoch".
      limit: the run's total of that work, e.g. its number of epochs.
      limit_name: the setting ``limit`` comes from, named in errors.
      what: the checkpoint, as errors name it.

    Raises:
      jaxwm.identity.StaleRunError: another run's checkpoint, or one past
        ``limit``.
    """
    step = self.latest_step()
    if step is None:
      return like, 0
    metadata = self.read_metadata(step)
    identity_lib.check(metadata.get("identity"), identity, what=what,
                       folder=self._workdir)
    done = int(metadata[progress])
    if done > limit:
      raise identity_lib.StaleRunError(
          f"{what} in {self._workdir} is at {progress} {done}, past this "
          f"run's {limit_name}={limit}; use a new --workdir, or delete "
          f"{self._workdir} to start again.")
    return self.restore(step, like)[0], done

  def restore_as_saved(self, step: int) -> Any:
    """The state of ``step`` in the structure it was saved in (nested dicts
    of arrays), after checking its files' hashes; for a reader that knows
    no template of it (:func:`jaxwm.train.saved_model.load_model`)."""
    self._verify_once(step)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
    return restored["state"]

  def close(self) -> None:
    self._manager.close()
