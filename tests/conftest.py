"""Test set-up: 2 fake CPU devices, so that sharded code is exercised on CPU,
XLA:CPU's code generation at LLVM optimisation level 1, a thread pool with
room to spare for those devices, and a persistent compilation cache for the
session.

XLA reads the flags when JAX initialises its backend, so they are set here,
before any test module imports jax. The suite's programs are small and most
run briefly, so compiling them is much of its time. Measured on 2 cores, one
process each: at level 1 tests/steal/test_attacks.py takes 41 s against 56 s
at XLA's default (level 2), the model-stealing smoke runs 136 s against
156 s, and the Neural Cleanse tests, which run long loops, 25 s at either;
level 0 compiles faster still but runs those loops at a third of the speed
(70 s). The numbers each program computes stay within the tests' tolerances
(users' programs compile at XLA's default level). Most models of the
suite compile to the same programs (the same architecture, recipe and
shapes, other seeds or data); the cache compiles each once per session
instead of once per model.

Two devices, not eight: every batch is still split, every collective
still met and every sharded result compared with one device's (the
tests of the engine, DP-SGD, the alignment objective and crafting), and
the end-to-end tests run faster. Measured on an idle 2-core machine, one
process: tests/recipes/test_model_stealing.py with the white-box
model-stealing runlocal job took 70.2 s at 8 devices, 62.0 s at 4, 56.7 s
at 2 and 54.7 s at 1; tests/steal/test_attacks.py 38.7 s at 8, 26.7 s at
1; the whole suite (`-n 2`) 721 s at 2.

The fake devices run each sharded program on threads of one pool that
meet at every collective, and XLA sizes that pool to the larger of the
machine's CPUs and the device count: few threads on a small machine,
none to spare. Once a thread is held elsewhere (a device that ran
ahead to the next collective, a host that queued programs far ahead),
the devices still behind find no thread, the others wait at the
collective for them, and the process deadlocks; XLA aborts it after 40
s and pytest-xdist reports its test as crashed. Measured on 2 cores,
at eight devices a process, with six processes side by side training
the ensemble tests' 8-member models: 18 of 24 finished at the default
pool, 18 of 18 with ``NPROC=16`` (which XLA reads as the machine's CPU
count), at the same speed (tests/steal/test_attacks.py, medians of
3: 24.8 s at 8 threads, 25.1 s at 16). So the suite sets ``NPROC=16``
unless it is set. The training loop also keeps at most a few steps in
flight (jaxwm.train.dispatch), and `-n auto` starts one worker per CPU
the session may use (its affinity mask and cgroup quota), not one per
core the host reports (pytest-xdist's default counts physical cores
with psutil, which can see more cores than the session is given).
"""

import atexit
import math
import os
import pathlib
import shutil
import tempfile

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") +
    " --xla_force_host_platform_device_count=2"
    " --xla_backend_optimization_level=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("NPROC", "16")  # XLA:CPU's thread pool (docstring).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="jaxwm_tests_xla_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def _usable_cpus() -> int:
  """CPUs this process may run on: its affinity mask, capped by a cgroup v2
  quota (``cpu.max``: "QUOTA PERIOD", or "max PERIOD" when unlimited)."""
  cpus = len(os.sched_getaffinity(0))
  cpu_max = pathlib.Path("/sys/fs/cgroup/cpu.max")
  if cpu_max.exists():
    quota, period = cpu_max.read_text().split()
    if quota != "max":
      cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
  return cpus


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per usable CPU (``PYTEST_XDIST_AUTO_NUM_WORKERS``
  still overrides)."""
  del config
  return int(os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", 0)) or (
      _usable_cpus())
