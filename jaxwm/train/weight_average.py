"""The mean of a model's variables over the last epochs of a run.

Stochastic weight averaging (Izmailov et al., 2018, "Averaging Weights
Leads to Wider Optima and Better Generalization"): the parameters a
constant learning rate leaves at the ends of the last K epochs are
averaged, which lands nearer the centre of the region they wander in than
any one of them. The batch-normalisation statistics are averaged with the
parameters (the running means and variances of the same K epochs): the
averaged weights with the last epoch's statistics alone are far less
accurate.

:class:`EpochAverage` is an engine hook (``on_epoch_end``); with a workdir
the running mean is checkpointed after each averaged epoch, before the
engine's own checkpoint of that epoch, so a run resumed from any of the
engine's checkpoints finds every epoch it needs already in the mean.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxwm.config_checks.core import require_integer
from jaxwm.train.checkpoint import Checkpointer
from jaxwm.train.state import TrainState

AVERAGE_FOLDER = "weight_average"


def check_average_epochs(average_epochs: int, num_epochs: int) -> None:
  """Raises ValueError unless 0 <= ``average_epochs`` <= ``num_epochs``."""
  require_integer("average_epochs", average_epochs, 0, num_epochs,
                  note=f" (0: no averaging; {num_epochs}: num_epochs)")


class EpochAverage:
  """The running mean of ``state.variables()`` at the ends of epochs
  ``num_epochs - average_epochs + 1`` to ``num_epochs``.

  Pass :meth:`on_epoch_end` to the engine; after the run :meth:`variables`
  is the mean (``{"params": ..., "batch_stats": ...}``, the structure of
  ``like``).
  """

  def __init__(self, like: dict[str, Any], num_epochs: int,
               average_epochs: int, workdir: str | None = None):
    """
    Args:
      like: variables of the model's structure (e.g. its initial ones).
      num_epochs: the run's epochs.
      average_epochs: K >= 1, how many of the last epochs are averaged.
      workdir: the engine's checkpoint folder (the mean is kept in its
        :data:`AVERAGE_FOLDER`); None: kept in memory only.
    """
    require_integer("average_epochs", average_epochs, 1, num_epochs)
    self._num_epochs = num_epochs
    self._first = num_epochs - average_epochs + 1
    self._checkpointer = None if workdir is None else Checkpointer(
        os.path.join(workdir, AVERAGE_FOLDER), max_to_keep=1)
    self._mean, self._through = None, self._first - 1
    if self._checkpointer is not None:
      self._resume(jax.tree.map(jnp.asarray, dict(like)))

  def _record(self) -> dict[str, Any]:
    return {"first_epoch": self._first, "num_epochs": self._num_epochs}

  def _resume(self, like: dict[str, Any]) -> None:
    mean, through = self._checkpointer.resume(
        like, self._record(), progress="epoch", limit=self._num_epochs,
        limit_name="num_epochs", what="the weight average")
    if through >= self._first:
      self._mean, self._through = mean, through

  def on_epoch_end(self, epoch: int, state: TrainState) -> None:
    """Adds the variables after ``epoch`` (1-based) to the mean when the
    epoch is one of the averaged ones and not in it already."""
    if epoch < self._first or epoch <= self._through:
      return
    if epoch != self._through + 1:
      raise RuntimeError(
          f"the weight average holds epochs {self._first}-{self._through} "
          f"but epoch {epoch} came next; delete the run's workdir to train "
          "it again.")
    variables = state.variables()
    if self._mean is None:
      self._mean = jax.tree.map(jnp.copy, variables)
    else:
      count = epoch - self._first + 1
      self._mean = jax.tree.map(lambda mean, new: mean + (new - mean) / count,
                                self._mean, variables)
    self._through = epoch
    if self._checkpointer is not None:
      self._checkpointer.save(epoch, self._mean,
                              {"epoch": epoch, "identity": self._record()})

  def variables(self) -> dict[str, Any]:
    """The mean over the averaged epochs.

    Raises:
      RuntimeError: when the run has not reached its last epoch.
    """
    if self._through != self._num_epochs:
      raise RuntimeError(
          f"the weight average holds epochs up to {self._through} of "
          f"{self._num_epochs}; train the run to its end first (a run "
          "restored from checkpoints that were made without averaging "
          "needs a new workdir).")
    return self._mean

  def close(self) -> None:
    if self._checkpointer is not None:
      self._checkpointer.close()
