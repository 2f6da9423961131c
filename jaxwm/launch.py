"""What every absl launcher in ``experiments/`` shares: the flags of the
results contract (``--config``, ``--workdir``, ``--output_json``,
``--distributed``) and the code that runs a job, times it and writes its
results JSON (:mod:`jaxwm.results`) whatever happens.

A job is a run function ``run_fn(config, workdir, metrics)``: it fills the
dict ``metrics`` stage by stage, as values are measured, and returns
``{"dataset": ..., "model": ..., "metrics": metrics}``. When it raises, the
JSON still holds what ``metrics`` had received (status ``"failed"``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, Callable, Mapping

import jax
from absl import flags, logging
from ml_collections import config_flags

from jaxwm import monitor, results
from jaxwm.config_checks import launchers as config_checks
from jaxwm.config_checks.core import Problem, raise_problems
from jaxwm.train import sharding

# The flags that define_flags declares belong to the launcher calling it, so
# that its --help lists them.
flags.disclaim_key_flags()

# (config, workdir, metrics to fill) -> {"dataset", "model", "metrics"}
RunFn = Callable[[Any, str, dict[str, Any]], Mapping[str, Any]]


def define_flags(config_example: str) -> None:
  """Declares the launcher flags; call once, from the launcher's module.

  Args:
    config_example: a ``--config`` value for the help text, e.g.
      ``configs/train.py:digits,runlocal``.
  """
  config_flags.DEFINE_config_file(
      "config", None, "Config file and variant, FILE.py:VARIANT, naming a "
      f"dataset, e.g. {config_example} (required).", lock_config=True)
  flags.mark_flag_as_required("config")
  flags.DEFINE_string("workdir", None,
                      "Checkpoints and artefacts go here; a rerun with the "
                      "same workdir resumes. Default: a new temporary folder.")
  flags.DEFINE_string("output_json", None, "Write the results JSON here.")
  flags.DEFINE_bool("distributed", False,
                    "Join a multi-process job (TPU pod slice, multi-node "
                    "GPU) with jax.distributed.initialize before any work; "
                    "needs --workdir on a file system all processes share.")
  flags.DEFINE_string("coordinator_address", None,
                      "With --distributed: HOST:PORT of process 0, the same "
                      "on every process. Default: $JAX_COORDINATOR_ADDRESS "
                      "or the TPU, SLURM or Open MPI cluster's.")
  flags.DEFINE_integer("num_processes", None,
                       "With --distributed: the number of processes. "
                       "Default: the cluster's.")
  flags.DEFINE_integer("process_id", None,
                       "With --distributed: this process's index, 0 to "
                       "num_processes - 1. Default: the cluster's.")
  flags.DEFINE_integer("heartbeat_timeout_s", 100,
                       "With --distributed: seconds without a heartbeat "
                       "after which a process counts as lost and the others "
                       "stop with an error naming it.")


# The flags that only a --distributed job reads.
_DISTRIBUTED_FLAGS = ("coordinator_address", "num_processes", "process_id",
                      "heartbeat_timeout_s")


def _distributed_only(values) -> list[Problem]:
  """The flags of a multi-process job given without ``--distributed``."""
  return [Problem(f"--{name}", values[name].value,
                  "is only read with --distributed; add --distributed to "
                  "join a multi-process job, or leave it out.")
          for name in _DISTRIBUTED_FLAGS if values[name].present]


def _distributed_problems(values) -> list[Problem]:
  """The bad flags of a ``--distributed`` job."""
  problems = []
  if values.workdir is None:
    problems.append(Problem(
        "--workdir", None, "a multi-process job needs one folder that every "
        "process reaches (a shared file system), the same on every process, "
        "e.g. --workdir=/shared/run1."))
  count, index = values.num_processes, values.process_id
  if count is not None and count < 1:
    problems.append(Problem("--num_processes", count, "must be >= 1."))
  if index is not None and (index < 0 or
                            (count is not None and index >= count)):
    bound = "num_processes - 1" if count is None else f"{count - 1}"
    problems.append(Problem("--process_id", index,
                            f"must be in [0, {bound}]."))
  if values.heartbeat_timeout_s < 1:
    problems.append(Problem("--heartbeat_timeout_s",
                            values.heartbeat_timeout_s, "must be >= 1."))
  return problems


def join_distributed_job(values: flags.FlagValues) -> None:
  """What ``--distributed`` does: checks the flags of a multi-process job
  and joins it (:func:`jaxwm.train.sharding.initialize_distributed`).

  Args:
    values: the parsed flags (``absl.flags.FLAGS``).

  Raises:
    ConfigError: a bad flag, before anything is joined.
  """
  raise_problems(_distributed_problems(values))
  sharding.initialize_distributed(
      values.coordinator_address, values.num_processes, values.process_id,
      heartbeat_timeout_s=values.heartbeat_timeout_s)
  logging.info("process %d of %d, %d local and %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def pictures_dir(workdir: str, output_json: str | None) -> str:
  """Where a job's pictures go: beside its results JSON, in
  ``<output_json without .json>_pictures/``, or ``workdir/pictures``."""
  if output_json:
    return os.path.splitext(output_json)[0] + "_pictures"
  return os.path.join(workdir, "pictures")


def tensorboard_dir(workdir: str) -> str:
  """Where a job's TensorBoard log goes: ``workdir/tensorboard``."""
  return os.path.join(workdir, "tensorboard")


def _run_log(workdir: str, output_json: str | None) -> monitor.RunLog:
  """The job's run log; process 0 of a multi-process job writes it."""
  if jax.process_index() != 0:
    return monitor.RunLog()
  return monitor.RunLog(pictures_dir(workdir, output_json),
                        tensorboard_dir(workdir))


def run_job(experiment: str, run_fn: RunFn, config, *,
            workdir: str | None = None, output_json: str | None = None,
            command: str | None = None,
            check: config_checks.Check | None = None) -> dict[str, Any]:
  """Runs one job and returns its results JSON object (also written to
  ``output_json`` when given), also when the job raises.

  Args:
    experiment: the launcher's name, e.g. ``"craft_poison"``.
    run_fn: the job (module docstring).
    config: the resolved config.
    workdir: where the job keeps its models; default a new temporary folder.
    output_json: where to write the results JSON; None writes nothing. In
      a multi-process job, process 0 writes it.
    command: the command line recorded; default ``sys.argv``.
    check: one of :mod:`jaxwm.config_checks.launchers`; it checks the config
      before anything is made (the paths are checked in any case).

  Returns:
    The results (see :mod:`jaxwm.results`); ``status`` is ``"failed"`` when
    the job raised, and ``error`` then holds the exception. Its pictures
    (training curves, and the recipe's image grids and histograms) are in
    :func:`pictures_dir` and its TensorBoard log in :func:`tensorboard_dir`
    (:mod:`jaxwm.monitor`).

  Raises:
    ConfigError: every bad setting and path, before any work (no JSON is
      written: nothing was run).
    KeyboardInterrupt: re-raised after the JSON is written.
  """
  config_checks.check_launch(config, check, workdir=workdir,
                             output_json=output_json)
  started, revision = results.now_utc(), results.source_revision()
  workdir = workdir or tempfile.mkdtemp(prefix=f"jaxwm_{experiment}_")
  os.makedirs(workdir, exist_ok=True)
  logging.info("%s: workdir %s\n%s", experiment, workdir, config)
  metrics: dict[str, Any] = {}
  outcome: Mapping[str, Any] = {}
  error = None
  start = time.perf_counter()
  run_log = _run_log(workdir, output_json)
  try:
    with monitor.recording(run_log):
      outcome = run_fn(config, workdir, metrics)
  except (Exception, KeyboardInterrupt) as caught:  # pylint: disable=W0718
    logging.exception("%s failed", experiment)
    error = caught
  if run_log.written:
    logging.info("%s: pictures %s", experiment, ", ".join(run_log.written))
  wall_s = time.perf_counter() - start
  written = results.build_results(
      experiment=experiment, config=config,
      dataset=outcome.get("dataset", config.dataset),
      model=outcome.get("model", config.model), seed=config.seed,
      metrics=outcome.get("metrics", metrics), wall_s=wall_s, error=error,
      command=command, started=started, revision=revision)
  logging.info("%s: %s, metrics %s (%.1f s)", experiment, written["status"],
               written["metrics"], wall_s)
  if output_json and jax.process_index() == 0:
    results.save_results(output_json, written)
  if isinstance(error, KeyboardInterrupt):
    raise error
  return written


def _print_outputs(workdir: str | None, output_json: str | None) -> None:
  """Names the pictures folder and the TensorBoard log, when written (a
  job without ``--workdir`` logs them: its workdir is a temporary one)."""
  if workdir is None and output_json is None:
    return
  pictures = pictures_dir(workdir or "", output_json)
  if os.path.isdir(pictures):
    print(f"pictures: {pictures}")
  if workdir and os.path.isdir(tensorboard_dir(workdir)):
    print(f"metrics log: tensorboard --logdir={tensorboard_dir(workdir)}")


def run(experiment: str, run_fn: RunFn,
        check: config_checks.Check | None = None) -> dict[str, Any]:
  """:func:`run_job` with the parsed flags; prints the summary and exits
  with status 1 when the job failed.

  Returns:
    The results of a job that did not fail.
  """
  values = flags.FLAGS
  if values.distributed:
    join_distributed_job(values)
  else:
    raise_problems(_distributed_only(values))
  written = run_job(experiment, run_fn, values.config,
                    workdir=values.workdir, output_json=values.output_json,
                    check=check)
  print(results.summary(written))
  _print_outputs(values.workdir, values.output_json)
  if values.output_json:
    print(f"results: {values.output_json}")
  if written["status"] == "failed":
    sys.exit(1)
  return written
