"""Test set-up: 8 fake CPU devices, so that sharded code is exercised on CPU,
XLA:CPU's code generation at optimisation level 0, and a persistent
compilation cache for the session.

XLA reads the flags when JAX initialises its backend, so they are set here,
before any test module imports jax. The suite's programs are small and each
runs briefly, so compiling them is most of its time: at level 0 LLVM
compiles them faster (measured on 2 cores: tests/steal/test_attacks.py 56 ->
44 s, the model-stealing smoke runs 156 -> 123 s), while the numbers each
program computes stay within the tests' tolerances (users' programs compile
at XLA's default level). Most models of the suite compile to the same
programs (the same architecture, recipe and shapes, other seeds or data);
the cache compiles each once per session instead of once per model.
"""

import atexit
import os
import shutil
import tempfile

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
