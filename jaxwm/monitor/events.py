"""A metrics log that TensorBoard reads, without TensorFlow.

The event files are written by tensorboardX (numpy and protobuf only),
imported when the first writer opens.
"""

from __future__ import annotations

import os
import re

from jaxwm.monitor.plots import require


def safe_name(name: str) -> str:
  """``name`` as one folder name: runs of other characters become ``_``."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


class EventLog:
  """Scalars by tag and step, one TensorBoard run (sub-folder) per model.

  ``tensorboard --logdir=LOGDIR`` shows them.
  """

  def __init__(self, logdir: str):
    self._logdir = logdir
    self._writers = {}
    self._summary_writer = require("tensorboardX").SummaryWriter

  def scalars(self, run: str, step: int, values: dict[str, float]) -> None:
    """Adds ``values`` {tag: float} at ``step`` to the run ``run``."""
    writer = self._writers.get(run)
    if writer is None:
      writer = self._summary_writer(os.path.join(self._logdir,
                                                 safe_name(run)))
      self._writers[run] = writer
    for tag, value in values.items():
      writer.add_scalar(tag, value, step)

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()
    self._writers = {}
