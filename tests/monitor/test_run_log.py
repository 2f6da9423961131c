"""The run log: model i/N, the overall ETA, curves, and progress lines
that show where absl's INFO log is hidden."""

from __future__ import annotations

import os
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxwm import monitor, train
from jaxwm.data.dataset import Dataset

import tiny

RECIPE = ml_collections.ConfigDict(dict(
    optimizer="sgd", learning_rate=0.05, schedule="constant", momentum=0.9,
    nesterov=False, weight_decay=0.0))


class _Clock:
  """A clock the test advances by hand."""

  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


def test_models_are_counted_and_the_overall_eta_adds_the_rest():
  clock = _Clock()
  log = monitor.RunLog(clock=clock)
  with monitor.recording(log):
    monitor.expect_models(3)
    first = log.track_model("benign", 10, 0, 5)
    assert first.prefix() == "model 1/3 (benign)  "
    clock.now = 4.0
    first.record(5, 1.0, 0.5)
    # Halfway after 4 s: 4 s left for it, 8 s for each of two more.
    assert first.overall_eta(4.0) == pytest.approx(4.0 + 2 * 8.0)
    clock.now = 10.0
    first.record(10, 0.5, 0.8)
    first.finish()
    monitor.skip_model()  # the second is restored from disk
    third = log.track_model(None, 10, 0, 5)
    assert third.prefix() == "model 3/3 (model-3)  "
    assert third.overall_eta(2.0) == pytest.approx(2.0)
  assert log.model_seconds == [10.0]
  assert log.curves["benign"] == {"epoch": [1.0, 2.0], "loss": [1.0, 0.5],
                                  "accuracy": [0.5, 0.8]}


def test_an_ensemble_counts_as_its_members():
  clock = _Clock()
  log = monitor.RunLog(clock=clock)
  with monitor.recording(log):
    monitor.expect_models(20)
    first = log.track_model(None, 10, 0, 5, models=8)
    assert first.prefix() == "models 1-8/20 (models-1-8)  "
    clock.now = 8.0
    first.record(10, 0.5, 0.8)
    first.finish()
    second = log.track_model("group", 10, 0, 5, models=8)
    assert second.prefix() == "models 9-16/20 (group)  "
    # 1 s per model so far: 4 s for this group's rest, 4 models after it.
    assert second.overall_eta(4.0) == pytest.approx(4.0 + 4 * 1.0)
  assert log.model_seconds == [1.0]


def test_a_resumed_model_that_trains_nothing_does_not_count_in_the_eta():
  log = monitor.RunLog()
  track = log.track_model("done", 10, 10, 5)
  track.finish()
  assert log.model_seconds == []


def test_without_a_count_there_is_no_overall_eta():
  track = monitor.RunLog().track_model("m", 10, 0, 5)
  assert track.prefix() == "model 1 (m)  "
  assert track.overall_eta(3.0) is None


def test_outside_a_run_nothing_is_drawn(tmp_path):
  assert monitor.current() is None
  assert monitor.add_image_grid("g", np.zeros((1, 4, 4, 1), np.uint8)) is None
  monitor.expect_models(2)  # no run: ignored
  assert monitor.current() is None


def test_a_missing_matplotlib_is_said_once_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  log = monitor.RunLog(pictures_dir=str(tmp_path))
  with monitor.recording(log):
    images = np.zeros((2, 4, 4, 1), np.uint8)
    assert monitor.add_image_grid("a", images) is None
    assert monitor.add_image_grid("b", images) is None
  assert log.pictures_dir is None and not os.listdir(tmp_path)
  said = [r for r in caplog.records if "jaxwm[plots]" in r.getMessage()]
  assert len(said) == 1


def test_grids_and_histograms_go_to_the_pictures_folder(tmp_path):
  pytest.importorskip("matplotlib")
  log = monitor.RunLog(pictures_dir=str(tmp_path / "pictures"))
  with monitor.recording(log):
    grid = monitor.add_image_grid("triggers",
                                  np.full((2, 4, 4, 3), 200, np.uint8))
    histogram = monitor.add_histogram("p_values", [0.1, 0.5],
                                      xlabel="p-value")
  assert grid == str(tmp_path / "pictures" / "triggers.png")
  assert histogram == str(tmp_path / "pictures" / "p_values.png")
  assert log.written == [grid, histogram]
  assert all(os.path.getsize(path) > 0 for path in log.written)


def _fit(name: str | None = None):
  rng = np.random.default_rng(0)
  data = Dataset(rng.integers(0, 255, (64, 4, 4, 1), dtype=np.uint8),
                 rng.integers(0, 2, 64), 2)
  model = tiny.Linear(2)
  optimizer = train.make_optimizer(RECIPE, 4, 2)
  state = train.create_train_state(model, optimizer, (4, 4, 1),
                                   jax.random.PRNGKey(0))
  train.fit(train.make_train_step(model, optimizer), state, data,
            batch_size=16, num_epochs=2, data_rng=jax.random.PRNGKey(1),
            log_every_steps=2, progress_bar=False, name=name)


def test_fit_reports_to_the_run_and_prints_where_info_is_hidden(capsys):
  log = monitor.RunLog()
  with monitor.recording(log):
    monitor.expect_models(2)
    _fit("tiny")
  lines = capsys.readouterr().err.splitlines()
  # 4 steps per epoch, a line every 2 steps: 4 lines, on stderr, because
  # absl shows no INFO outside an absl app.
  progress = [line for line in lines if "step" in line]
  assert len(progress) == 4
  assert progress[0].startswith("model 1/2 (tiny)  step 2/8")
  assert "overall ETA" in progress[0]
  assert log.curves["tiny"]["epoch"] == [0.5, 1.0, 1.5, 2.0]
  assert np.all(np.isfinite(log.curves["tiny"]["loss"]))
  assert len(log.model_seconds) == 1


def test_a_launcher_job_draws_beside_its_results_json(tmp_path):
  pytest.importorskip("matplotlib")
  from jaxwm import launch  # pylint: disable=g-import-not-at-top

  def job(config, workdir, metrics):
    del workdir
    monitor.add_image_grid("triggers", np.zeros((2, 4, 4, 1), np.uint8))
    metrics["models"] = 0
    return {"dataset": config.dataset, "model": config.model,
            "metrics": metrics}

  config = ml_collections.ConfigDict(dict(dataset="digits", model="cnn",
                                          seed=0))
  output = tmp_path / "out" / "run.json"
  written = launch.run_job("demo", job, config, workdir=str(tmp_path / "w"),
                           output_json=str(output))
  assert written["status"] == "ok"
  assert os.path.exists(tmp_path / "out" / "run_pictures" / "triggers.png")
  assert monitor.current() is None  # the run log closed with the job
