"""What every absl launcher in ``experiments/`` shares: the flags of the
results contract (``--config``, ``--workdir``, ``--output_json``,
``--distributed``) and the code that times a run and writes its JSON."""

from __future__ import annotations

import os
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

# (config, workdir) -> {"dataset": ..., "model": ..., "metrics": {...}}
RunFn = Callable[[Any, str], Mapping[str, Any]]


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


def run(experiment: str, run_fn: RunFn,
        check: config_checks.Check | None = None) -> dict[str, Any]:
  """Runs ``run_fn`` with the parsed flags and writes the results contract.

  ``check`` (one of :mod:`jaxwm.config_checks.launchers`) checks the config
  before anything is made; the paths are checked in any case.

  Raises:
    ConfigError: every bad setting and path, before any work.
  """
  values = flags.FLAGS
  if values.distributed:
    sharding.initialize_distributed()
  config = values.config
  config_checks.check_launch(config, check, workdir=values.workdir,
                             output_json=values.output_json)
  workdir = values.workdir or tempfile.mkdtemp(prefix=f"jaxwm_{experiment}_")
  os.makedirs(workdir, exist_ok=True)
  logging.info("%s: workdir %s\n%s", experiment, workdir, config)
  start = time.perf_counter()
  outcome = run_fn(config, workdir)
  wall_s = time.perf_counter() - start
  logging.info("%s metrics: %s (%.1f s)", experiment, dict(outcome["metrics"]),
               wall_s)
  if values.output_json:
    return results.write_results(
        values.output_json, experiment=experiment, config=config,
        dataset=outcome["dataset"], model=outcome["model"], seed=config.seed,
        metrics=outcome["metrics"], wall_s=wall_s)
  return dict(outcome)
