"""The run log: what a run reports as it goes, and where it goes.

A launcher opens one :class:`RunLog` around its job (:func:`recording`);
the code below it reports to :func:`current` without being handed it:

* :func:`jaxwm.train.fit` tracks each model it trains
  (:meth:`RunLog.track_model`): its progress lines read ``model i/N``
  (``models i-j/N`` for an ensemble) with
  an ETA of the model and of the whole run, and its loss and accuracy go to
  the TensorBoard log and, when the model is done, to
  ``training_curves.png``;
* a recipe says how many models it trains (:func:`expect_models`), which
  it does not train this time (:func:`skip_model`: restored from an
  earlier run), and adds image grids (:func:`add_image_grid`: triggers,
  marked samples) and histograms (:func:`add_histogram`: p-values).

Outside :func:`recording` (library use) nothing is written and progress
lines read as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from typing import Iterator, Sequence

import numpy as np
from absl import logging

from jaxwm.monitor import events, plots

CURVES_FILE = "training_curves.png"

_CURRENT: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "jaxwm_run_log", default=None)


class RunLog:
  """Pictures, a TensorBoard log and model counts of one run.

  Args:
    pictures_dir: where PNG files go; None draws none.
    tensorboard_dir: where TensorBoard event files go (one sub-folder per
      model); None writes none.
    clock: seconds, for the ETAs (``time.perf_counter``).
  """

  def __init__(self, pictures_dir: str | None = None,
               tensorboard_dir: str | None = None,
               clock=time.perf_counter):
    self.pictures_dir = pictures_dir
    self.tensorboard_dir = tensorboard_dir
    self.clock = clock
    self.expected_models: int | None = None
    self.started_models = 0
    self.model_seconds: list[float] = []
    self.curves: dict[str, dict[str, list[float]]] = {}
    self.written: list[str] = []
    self._events = None

  def track_model(self, name: str | None, total_steps: int,
                  first_step: int, steps_per_epoch: int,
                  models: int = 1) -> ModelTrack:
    """Counts the model (or ``models`` trained at once, an ensemble) whose
    training starts now and returns its track.

    Args:
      name: the model's name in the progress lines, the curves and the
        TensorBoard log; None: ``model-i`` (``models-i-j`` for several).
      total_steps: the steps of its whole training.
      first_step: the step it starts from (> 0 when resumed).
      steps_per_epoch: its steps per epoch (the curves' epoch axis).
      models: how many models the training trains at once.
    """
    first = self.started_models + 1
    self.started_models += models
    default = (f"model-{first}" if models == 1
               else f"models-{first}-{self.started_models}")
    return ModelTrack(self, first, models, name or default, total_steps,
                      first_step, steps_per_epoch)

  def picture(self, draw, name: str, *args, **kwargs) -> str | None:
    """``draw(*args, path, **kwargs)`` with ``path`` = ``name`` in
    :attr:`pictures_dir`; None when no picture is drawn (no folder, or no
    matplotlib: then said once and no more pictures are tried)."""
    if self.pictures_dir is None:
      return None
    path = os.path.join(self.pictures_dir, name)
    try:
      draw(*args, path, **kwargs)
    except plots.PlotsUnavailableError as error:
      logging.warning("%s", error)
      self.pictures_dir = None
      return None
    if path not in self.written:
      self.written.append(path)
    return path

  def scalars(self, run: str, step: int, values: dict[str, float]) -> None:
    """Adds ``values`` to the TensorBoard log (when one is written)."""
    if self.tensorboard_dir is None:
      return
    try:
      if self._events is None:
        self._events = events.EventLog(self.tensorboard_dir)
      self._events.scalars(run, step, values)
    except plots.PlotsUnavailableError as error:
      logging.warning("%s", error)
      self.tensorboard_dir = None

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None


class ModelTrack:
  """One model's training as the run log sees it (from
  :meth:`RunLog.track_model`)."""

  def __init__(self, run_log: RunLog, index: int, models: int, name: str,
               total_steps: int, first_step: int, steps_per_epoch: int):
    self._log = run_log
    self.index, self.models, self.name = index, models, name
    self.last = index + models - 1  # the last model's number
    self._total, self._first = total_steps, first_step
    self._steps_per_epoch = steps_per_epoch
    self._start = run_log.clock()
    self._last_step = first_step

  def prefix(self) -> str:
    """``"model i/N (name)  "`` (``"models i-j/N (name)  "`` for an
    ensemble), without ``/N`` when N is not known."""
    expected = self._log.expected_models
    count = (f"model {self.index}" if self.models == 1
             else f"models {self.index}-{self.last}")
    if expected is not None:
      count += f"/{max(expected, self.last)}"
    return f"{count} ({self.name})  "

  def overall_eta(self, model_eta: float) -> float | None:
    """Seconds until the run's last model is trained: this training's ETA
    and, for each model still to start, the mean time per model of the
    trainings so far (this one's projected time while none has finished).
    None when the number of models is not known."""
    expected = self._log.expected_models
    if expected is None:
      return None
    durations = self._log.model_seconds or [
        (self._log.clock() - self._start + model_eta) / self.models]
    remaining = max(0, expected - self.last)
    return model_eta + remaining * float(np.mean(durations))

  def record(self, step: int, loss: float, accuracy: float) -> None:
    """Adds a progress line's mean loss and accuracy at ``step``."""
    self._last_step = step
    curve = self._log.curves.setdefault(
        self.name, {"epoch": [], "loss": [], "accuracy": []})
    curve["epoch"].append(step / self._steps_per_epoch)
    curve["loss"].append(float(loss))
    curve["accuracy"].append(float(accuracy))
    self._log.scalars(self.name, step, {"train/loss": float(loss),
                                        "train/accuracy": float(accuracy)})

  def finish(self) -> None:
    """Ends the model: its time (per model, for an ensemble) counts towards
    the overall ETA when it trained at all, and the curves of every model
    so far are drawn."""
    if self._last_step > self._first:
      self._log.model_seconds.append(
          (self._log.clock() - self._start) / self.models)
    if self._log.curves:
      self._log.picture(plots.save_curves, CURVES_FILE, self._log.curves)


def current() -> RunLog | None:
  """The run log of the run in progress, None outside :func:`recording`."""
  return _CURRENT.get()


@contextlib.contextmanager
def recording(run_log: RunLog) -> Iterator[RunLog]:
  """Makes ``run_log`` :func:`current` inside the block; closes it after."""
  token = _CURRENT.set(run_log)
  try:
    yield run_log
  finally:
    _CURRENT.reset(token)
    run_log.close()


def expect_models(count: int) -> None:
  """Says that the run trains ``count`` models in all (``model i/N``)."""
  run_log = current()
  if run_log is not None:
    run_log.expected_models = count


def skip_model() -> None:
  """Counts a model of the run that is not trained (restored from disk)."""
  run_log = current()
  if run_log is not None:
    run_log.started_models += 1


def add_image_grid(name: str, images: np.ndarray,
                   titles: Sequence[str] | None = None,
                   title: str | None = None) -> str | None:
  """Draws ``images`` (uint8 [N, H, W, C]) as ``name.png`` in the run's
  pictures folder (:func:`jaxwm.monitor.plots.save_image_grid`); returns
  its path, or None when no picture is drawn."""
  run_log = current()
  if run_log is None:
    return None
  return run_log.picture(plots.save_image_grid, f"{name}.png", images,
                         titles=titles, title=title)


def add_histogram(name: str, values: Sequence[float], **kwargs
                  ) -> str | None:
  """Draws a histogram of ``values`` as ``name.png`` in the run's pictures
  folder (keyword arguments of
  :func:`jaxwm.monitor.plots.save_histogram`); returns its path, or None."""
  run_log = current()
  if run_log is None:
    return None
  return run_log.picture(plots.save_histogram, f"{name}.png", values,
                         **kwargs)
