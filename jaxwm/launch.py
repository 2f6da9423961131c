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
from jaxwm.train import sharding

# (config, workdir) -> {"dataset": ..., "model": ..., "metrics": {...}}
RunFn = Callable[[Any, str], Mapping[str, Any]]


def define_flags(default_config: str) -> None:
  """Declares the launcher flags; call once at module level."""
  config_flags.DEFINE_config_file(
      "config", default_config, "Config file and variant, FILE.py:VARIANT.",
      lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Checkpoints and artefacts go here; a rerun with the "
                      "same workdir resumes. Default: a new temporary folder.")
  flags.DEFINE_string("output_json", None, "Write the results JSON here.")
  flags.DEFINE_bool("distributed", False,
                    "Call jax.distributed.initialize() (multi-host jobs).")


def run(experiment: str, run_fn: RunFn) -> dict[str, Any]:
  """Runs ``run_fn`` with the parsed flags and writes the results contract."""
  values = flags.FLAGS
  if values.distributed:
    sharding.initialize_distributed()
  config = values.config
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
