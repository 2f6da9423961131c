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

from absl import flags, logging
from ml_collections import config_flags

from jaxwm import results
from jaxwm.config_checks import launchers as config_checks
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
                    "Call jax.distributed.initialize() (multi-host jobs).")


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
    output_json: where to write the results JSON; None writes nothing.
    command: the command line recorded; default ``sys.argv``.
    check: one of :mod:`jaxwm.config_checks.launchers`; it checks the config
      before anything is made (the paths are checked in any case).

  Returns:
    The results (see :mod:`jaxwm.results`); ``status`` is ``"failed"`` when
    the job raised, and ``error`` then holds the exception.

  Raises:
    ConfigError: every bad setting and path, before any work (no JSON is
      written: nothing was run).
    KeyboardInterrupt: re-raised after the JSON is written.
  """
  config_checks.check_launch(config, check, workdir=workdir,
                             output_json=output_json)
  started = results.now_utc()
  workdir = workdir or tempfile.mkdtemp(prefix=f"jaxwm_{experiment}_")
  os.makedirs(workdir, exist_ok=True)
  logging.info("%s: workdir %s\n%s", experiment, workdir, config)
  metrics: dict[str, Any] = {}
  outcome: Mapping[str, Any] = {}
  error = None
  start = time.perf_counter()
  try:
    outcome = run_fn(config, workdir, metrics)
  except (Exception, KeyboardInterrupt) as caught:  # pylint: disable=W0718
    logging.exception("%s failed", experiment)
    error = caught
  wall_s = time.perf_counter() - start
  written = results.build_results(
      experiment=experiment, config=config,
      dataset=outcome.get("dataset", config.dataset),
      model=outcome.get("model", config.model), seed=config.seed,
      metrics=outcome.get("metrics", metrics), wall_s=wall_s, error=error,
      command=command, started=started)
  logging.info("%s: %s, metrics %s (%.1f s)", experiment, written["status"],
               written["metrics"], wall_s)
  if output_json:
    results.save_results(output_json, written)
  if isinstance(error, KeyboardInterrupt):
    raise error
  return written


def run(experiment: str, run_fn: RunFn,
        check: config_checks.Check | None = None) -> dict[str, Any]:
  """:func:`run_job` with the parsed flags; prints the summary and exits
  with status 1 when the job failed.

  Returns:
    The results of a job that did not fail.
  """
  values = flags.FLAGS
  if values.distributed:
    sharding.initialize_distributed()
  written = run_job(experiment, run_fn, values.config,
                    workdir=values.workdir, output_json=values.output_json,
                    check=check)
  print(results.summary(written))
  if values.output_json:
    print(f"results: {values.output_json}")
  if written["status"] == "failed":
    sys.exit(1)
  return written
