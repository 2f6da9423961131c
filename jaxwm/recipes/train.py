"""The ``train`` experiment: fit one model and report its test accuracy.

:func:`train_and_evaluate` is the whole ``experiments/train.py`` job,
importable from a notebook.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging

from jaxwm import monitor
from jaxwm.train import recipe


def train_and_evaluate(config, workdir: str,
                       metrics: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
  """The ``train`` experiment: fit ``config.model`` and report test accuracy.

  ``workdir/model`` holds the checkpoints of this one run. A rerun with the
  same config and data resumes it (or reuses the finished model); a rerun
  with any other value that determines the model (a config field of
  :func:`jaxwm.train.recipe.run_identity`, the training data, the jaxwm
  version) refuses with :class:`jaxwm.identity.StaleRunError` naming every
  differing field, and restores nothing. It does not move to a
  fingerprinted subfolder: one ``--workdir`` holds one training run, so its
  results can never be mistaken for another configuration's; use a new
  ``--workdir`` per configuration.

  Args:
    config: a config from ``configs/train.py``.
    workdir: the checkpoint folder's parent.
    metrics: the dict to fill as values are measured (the launcher's, so
      that a failure still reports them); default a new one.

  Returns:
    {"dataset", "model", "metrics": {"benign_accuracy", "test_loss",
    "train_examples"}} as the launcher's results contract expects.
  """
  metrics = {} if metrics is None else metrics
  train, test = recipe.load_datasets(config)
  metrics["train_examples"] = len(train)
  logging.info("Training %s on %d %s images %s", config.model, len(train),
               config.dataset, train.image_shape)
  monitor.expect_models(1)
  trained = recipe.train_model(config, train,
                               workdir=os.path.join(workdir, "model"))
  scores = trained.evaluate(test)
  metrics.update(benign_accuracy=scores["accuracy"],
                 test_loss=scores["loss"])
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
