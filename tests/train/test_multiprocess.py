"""Multi-process training on local CPU processes, as on a pod or a cluster.

Each test starts ``experiments/train.py --distributed`` once per process,
with the coordinator on 127.0.0.1 and a free port: the command of a TPU pod
slice or a multi-node GPU job (docs/distributed.md) with localhost in place
of the coordinator's host. Every process feeds its own rows of each global
batch; the processes exchange gradients with JAX's CPU collectives (Gloo)
and write one checkpoint together. The tests check that the trained
parameters equal those of one process trained on the same global batches,
that this process restores the checkpoint, and that a lost process stops
the others with an error naming it instead of leaving them waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Any, Iterator

import jax
import numpy as np
import pytest

from configs import train as train_configs
from jaxwm.train import make_mesh, recipe

import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
VARIANT = "digits,runlocal"
# 287 training images: 4 steps of the global batch of 64.
OVERRIDES = {"train_fraction": 0.2, "train.num_epochs": 1}
# A job that trains until it is stopped, reporting every step.
ENDLESS = {**OVERRIDES, "train.num_epochs": 100_000,
           "train.log_every_steps": 1,
           "train.checkpoint_every_epochs": 100_000}
HEARTBEAT_S = 5
# The most a job may take on a loaded 2-core machine.
JOB_TIMEOUT_S = 300
# How soon after a process is lost the others must have stopped.
LOST_PROCESS_BOUND_S = 60


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def _environment(local_devices: int) -> dict[str, str]:
  """This environment with ``local_devices`` fake CPU devices.

  The processes keep the suite's other XLA flags (tests/conftest.py),
  among them LLVM's optimisation level 0: the same programs, compiled in
  a fraction of the time, for a few steps. (JAX's persistent compilation
  cache does not spare the compilations: on CPU, only process 0 writes to
  it and other processes' programs differ in their devices.)
  """
  return {**os.environ, "XLA_FLAGS": tiny.xla_flags(local_devices),
          "JAX_PLATFORMS": "cpu"}


def _config():
  """The config of the jobs that train to the end, as the launcher reads it."""
  config = train_configs.get_config(VARIANT)
  config.update_from_flattened_dict(OVERRIDES)
  return config


class _Job:
  """The processes of one ``experiments/train.py --distributed`` job."""

  def __init__(self, folder, num_processes: int, local_devices: int,
               overrides: dict[str, Any]):
    self.workdir = folder / "job"
    self.results = folder / "results.json"
    self.logs = [folder / f"process{i}.log" for i in range(num_processes)]
    address = f"127.0.0.1:{_free_port()}"
    command = [
        sys.executable, "-m", "experiments.train",
        f"--config={REPO}/configs/train.py:{VARIANT}",
        *(f"--config.{name}={value}" for name, value in overrides.items()),
        f"--workdir={self.workdir}", f"--output_json={self.results}",
        "--distributed", f"--coordinator_address={address}",
        f"--num_processes={num_processes}",
        f"--heartbeat_timeout_s={HEARTBEAT_S}"]
    self.processes = []
    for index, log in enumerate(self.logs):
      with open(log, "w") as out:
        self.processes.append(subprocess.Popen(
            [*command, f"--process_id={index}"], cwd=REPO,
            env=_environment(local_devices), stdout=out,
            stderr=subprocess.STDOUT))

  def log(self, index: int) -> str:
    return self.logs[index].read_text(errors="replace")

  def tails(self) -> str:
    return "\n".join(f"--- process {i}:\n{self.log(i)[-3000:]}"
                     for i in range(len(self.logs)))

  def wait(self, timeout_s: float) -> list[int]:
    """The exit status of every process."""
    deadline = time.monotonic() + timeout_s
    try:
      return [process.wait(max(deadline - time.monotonic(), 0.1))
              for process in self.processes]
    except subprocess.TimeoutExpired:
      pytest.fail(f"the job ran past {timeout_s} s\n{self.tails()}")

  def wait_for(self, index: int, pattern: str, timeout_s: float) -> None:
    """Waits until process ``index`` has logged ``pattern`` (a regex)."""
    deadline = time.monotonic() + timeout_s
    while not re.search(pattern, self.log(index)):
      if any(p.poll() is not None for p in self.processes):
        pytest.fail(f"a process ended before {pattern!r}\n{self.tails()}")
      if time.monotonic() > deadline:
        pytest.fail(f"no {pattern!r} within {timeout_s} s\n{self.tails()}")
      time.sleep(0.2)

  def stop(self) -> None:
    for process in self.processes:
      if process.poll() is None:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _job(*args) -> Iterator[_Job]:
  """A running :class:`_Job`; any process still running at the end is
  killed."""
  job = _Job(*args)
  try:
    yield job
  finally:
    job.stop()


@pytest.fixture(scope="module")
def one_process():
  """The job trained in this single process on one device, and its data."""
  config = _config()
  train, test = recipe.load_datasets(config)
  return config, train, test, recipe.train_model(
      config, train, mesh=make_mesh(jax.devices()[:1]))


def _max_abs_difference(a, b) -> float:
  a, b = jax.device_get((a, b))
  return max(float(np.max(np.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _no_training(epoch, state):
  del state
  pytest.fail(f"epoch {epoch} was trained again instead of restored")


@pytest.mark.parametrize("num_processes, local_devices", [(2, 2), (4, 1)])
def test_processes_train_like_one_process_and_their_checkpoint_restores(
    num_processes, local_devices, one_process, tmp_path):
  config, train, test, alone = one_process
  with _job(tmp_path, num_processes, local_devices, OVERRIDES) as job:
    assert job.wait(JOB_TIMEOUT_S) == [0] * num_processes, job.tails()
  for index in range(num_processes):
    assert f"process {index} of {num_processes}" in job.log(index)
  with open(job.results) as f:
    written = json.load(f)
  assert written["status"] == "ok", written["error"]

  # Here, in one process: the identity check passes, the SHA-256 manifest
  # written by process 0 matches, and the state is restored, not retrained.
  restored = recipe.train_model(config, train,
                                workdir=str(job.workdir / "model"),
                                on_epoch_end=_no_training)
  assert int(restored.state.step) == int(alone.state.step) == 4
  assert _max_abs_difference(restored.state.params,
                             alone.state.params) <= 1e-5
  assert _max_abs_difference(restored.state.model_state,
                             alone.state.model_state) <= 1e-5
  # The processes evaluated the test set together, as this process does.
  assert written["metrics"]["benign_accuracy"] == pytest.approx(
      alone.evaluate(test)["accuracy"], abs=1 / len(test))


def test_a_lost_process_stops_the_others_with_an_error_naming_it(tmp_path):
  with _job(tmp_path, 2, 1, ENDLESS) as job:
    job.wait_for(1, r"step 3/", JOB_TIMEOUT_S)
    job.processes[1].kill()
    try:
      status = job.processes[0].wait(LOST_PROCESS_BOUND_S)
    except subprocess.TimeoutExpired:
      pytest.fail(f"process 0 still ran {LOST_PROCESS_BOUND_S} s after "
                  f"process 1 was lost\n{job.tails()}")
  assert status != 0
  # JAX's coordination service names the process that stopped heartbeating.
  assert re.search(r"unhealthy \(stopped sending heartbeats\):\s*1\b",
                   job.log(0)), job.tails()
