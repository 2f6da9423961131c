"""Test set-up: 8 fake CPU devices, so that sharded code is exercised on CPU,
XLA:CPU's code generation at LLVM optimisation level 1, and a persistent
compilation cache for the session.

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

The eight fake devices run each sharded program on eight threads that meet
at every collective. XLA:CPU caps how many programs each device may have
queued; a host that dispatches far ahead fills one device's queue while
the others wait in a collective behind it, and the process deadlocks (on
2 cores, 7 of 10 processes training the detectors' digits model side by
side hung at an all-reduce; XLA aborts such a process after 40 s and
pytest-xdist reports its test as crashed). The training loop therefore
keeps at most a few steps in flight (jaxwm.train.loop), after which 10 of
10 finished. Oversubscription makes the race likelier, so `-n auto` also
starts one worker per CPU the session may use (its affinity mask and
cgroup quota), not one per core the host reports (pytest-xdist's default
counts physical cores with psutil, which can see more cores than the
session is given).
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
    " --xla_force_host_platform_device_count=8"
    " --xla_backend_optimization_level=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
