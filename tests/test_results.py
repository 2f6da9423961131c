"""The results JSON: status, provenance and what a failed run keeps."""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import subprocess
import sys

import ml_collections
import pytest

import jaxwm
from jaxwm import launch
from jaxwm import results


def _config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      seed=0, dataset="digits", model="cnn", train=dict(learning_rate=0.1)))
  config.update(overrides)
  return config


def _build(metrics=None, error=None, config=None, **fields):
  return results.build_results(
      experiment="test", config=config or _config(), dataset="digits",
      model="cnn", seed=0, metrics={} if metrics is None else metrics,
      wall_s=1.5, error=error, **fields)


def test_status_follows_what_was_computed():
  ok = _build({"benign_accuracy": 0.9, "p_value": {"malicious": 1e-9}})
  assert (ok["status"], ok["error"], ok["incomplete"]) == ("ok", None, {})
  partial = _build({"benign_accuracy": 0.9, "verification": {
      "malicious": {"p_value": 1e-9},
      "independent_m": results.not_computed("too few correct images")}})
  assert partial["status"] == "partial" and partial["error"] is None
  assert partial["incomplete"] == {
      "metrics.verification.independent_m": "too few correct images"}
  try:
    raise RuntimeError("the victim could not be trained")
  except RuntimeError as caught:
    failed = _build({"benign_accuracy": 0.9}, error=caught)
  assert failed["status"] == "failed"
  assert failed["metrics"] == {"benign_accuracy": 0.9}
  assert failed["error"]["type"] == "RuntimeError"
  assert failed["error"]["message"] == "the victim could not be trained"
  assert "raise RuntimeError" in failed["error"]["traceback"]


def test_a_non_finite_metric_fails_the_run_and_keeps_the_rest(tmp_path):
  written = _build({"test_loss": math.inf, "benign_accuracy": 0.5,
                    "curve": [0.1, math.nan]})
  assert written["status"] == "failed"
  assert written["metrics"]["benign_accuracy"] == 0.5
  assert set(written["metrics"]["test_loss"]) == {"error"}
  assert "inf" in written["metrics"]["test_loss"]["error"]
  assert "metrics.test_loss" in written["error"]["message"]
  assert "metrics.curve[1]" in written["error"]["message"]
  path = tmp_path / "r.json"
  results.save_results(str(path), written)  # strict JSON: no NaN, no inf
  assert json.loads(path.read_text()) == written
  assert os.listdir(tmp_path) == ["r.json"]


def test_provenance_fields(monkeypatch):
  monkeypatch.setattr(sys, "argv", ["experiments/train.py",
                                    "--config.note=two words", "--x='q'"])
  written = _build()
  assert written["command"] == (
      "experiments/train.py '--config.note=two words' '--x='\"'\"'q'\"'\"''")
  started = datetime.datetime.fromisoformat(written["started"])
  assert started.utcoffset() == datetime.timedelta(0)
  now = datetime.datetime.now(datetime.timezone.utc)
  assert abs((now - started).total_seconds()) < 60
  assert written["jaxwm_version"] == jaxwm.__version__
  assert len(written["fingerprint"]) == 16
  assert _build(command="a b", started="2020-01-01T00:00:00+00:00")[
      "command"] == "a b"


def test_the_fingerprint_covers_the_config_and_the_versions(monkeypatch):
  base = _build()["fingerprint"]
  assert _build()["fingerprint"] == base
  changed = _config()
  changed.train.learning_rate = 0.5
  assert _build(config=changed)["fingerprint"] != base
  monkeypatch.setattr(jaxwm, "__version__", "99.0")
  assert _build()["fingerprint"] != base


def test_git_commit_of_the_checkout_or_null(tmp_path, monkeypatch):
  root = os.path.dirname(os.path.dirname(os.path.abspath(jaxwm.__file__)))
  if shutil.which("git") and os.path.exists(os.path.join(root, ".git")):
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
    commit, dirty = results.source_revision()
    assert commit == head and isinstance(dirty, bool)
  # Not a git checkout (an installed copy), or no git at all: null.
  monkeypatch.setattr(jaxwm, "__file__",
                      str(tmp_path / "jaxwm" / "__init__.py"))
  assert results.source_revision() == (None, None)
  monkeypatch.undo()
  monkeypatch.setenv("PATH", str(tmp_path))
  assert results.source_revision() == (None, None)
  assert _build()["git_commit"] is None


def test_summary_names_the_status_the_reasons_and_the_numbers():
  text = results.summary(_build({
      "benign_accuracy": 0.91234, "digest": "ab" * 32,
      "p_value": {"malicious": 1e-12, "independent_m": 0.5},
      "verification": {"independent_t": results.not_computed("no images")},
      "curves": {"a": [1, 2]}}))
  lines = text.splitlines()
  assert lines[0].startswith("test: partial (1.5 s, digits, cnn, seed 0)")
  assert "  not computed: metrics.verification.independent_t: no images" in (
      lines)
  assert "  benign_accuracy 0.9123" in lines
  assert "  p_value malicious=1e-12 independent_m=0.5" in lines
  assert not any("curves" in line or "digest" in line for line in lines)


def test_summary_ends_with_one_line_per_verdict():
  text = results.summary(_build({
      "verification": {"malicious": {"p_value": 1e-12, "alpha": 0.01,
                                     "delta_p": 0.61234,
                                     "decision": "reject_h0"}},
      "removal": {"ftal": {"p_value": 0.5, "alpha": 0.01,
                           "watermark_accuracy": 0.1,
                           "decision": "fail_to_reject_h0"}}}))
  lines = text.splitlines()
  header = lines.index(next(line for line in lines if "verdict" in line))
  rows = [line.split() for line in lines[header + 1:]]
  assert rows == [
      ["verification.malicious", "1.00e-12", "0.01", "Delta", "P", "0.612",
       "reject_h0"],
      ["removal.ftal", "5.00e-01", "0.01", "agree", "0.100",
       "fail_to_reject_h0"]]


def test_run_job_keeps_what_was_measured_when_the_job_raises(tmp_path):
  def job(config, workdir, metrics):
    metrics["benign_accuracy"] = 0.8
    assert os.path.isdir(workdir)
    raise ValueError("the suspect is broken")

  output = tmp_path / "out.json"
  written = launch.run_job("test", job, _config(),
                           workdir=str(tmp_path / "work"),
                           output_json=str(output), command="job")
  assert json.loads(output.read_text()) == written
  assert written["status"] == "failed"
  assert written["metrics"] == {"benign_accuracy": 0.8}
  assert written["error"]["message"] == "the suspect is broken"
  assert (written["dataset"], written["model"]) == ("digits", "cnn")


def test_run_job_writes_the_json_of_an_interrupted_job(tmp_path):
  def job(config, workdir, metrics):
    metrics["models_done"] = 3
    raise KeyboardInterrupt

  output = tmp_path / "out.json"
  with pytest.raises(KeyboardInterrupt):
    launch.run_job("test", job, _config(), workdir=str(tmp_path),
                   output_json=str(output))
  written = json.loads(output.read_text())
  assert written["status"] == "failed"
  assert written["error"]["type"] == "KeyboardInterrupt"
  assert written["metrics"] == {"models_done": 3}


def test_run_job_records_the_code_it_started_with(tmp_path, monkeypatch):
  # The checkout moves on (a commit, a merge) while a long job runs: the
  # JSON names the code that ran, read when the job started.
  checkout = {"revision": ("a" * 40, False)}
  monkeypatch.setattr(results, "source_revision",
                      lambda: checkout["revision"])

  def job(config, workdir, metrics):
    del config, workdir
    checkout["revision"] = ("b" * 40, True)  # a commit during the run
    metrics["benign_accuracy"] = 0.8
    return {"metrics": metrics}

  written = launch.run_job("test", job, _config(),
                           workdir=str(tmp_path), command="job")
  assert (written["git_commit"], written["git_dirty"]) == ("a" * 40, False)
