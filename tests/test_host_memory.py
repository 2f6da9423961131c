"""Freed host memory is reused without page faults once jaxwm is imported."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
import subprocess
import sys

import pytest

import jaxwm  # pylint: disable=unused-import
from jaxwm import host_memory

# glibc, and none of its variables set by the user.
GLIBC_DEFAULTS = platform.libc_ver()[0] == "glibc" and not any(
    name in os.environ for name in host_memory.USER_VARIABLES)
APPLIES = GLIBC_DEFAULTS and not host_memory.preloaded_allocator()


def _page_faults_of_filling(num_bytes: int) -> int:
  """Minor page faults of malloc, fill and free of one block (as XLA does;
  numpy would ask for huge pages and hide the faults)."""
  libc = ctypes.CDLL(None)
  libc.malloc.restype = ctypes.c_void_p
  libc.malloc.argtypes = [ctypes.c_size_t]
  libc.free.argtypes = [ctypes.c_void_p]
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(num_bytes)
  ctypes.memset(block, 1, num_bytes)
  libc.free(block)
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not APPLIES, reason="not glibc, or the user's settings")
def test_a_large_block_is_reused_without_page_faults():
  assert host_memory.retain_freed_memory()
  num_bytes = 128 * 2**20  # Far above glibc's default mmap threshold.
  _page_faults_of_filling(num_bytes)
  # Without the settings every fill maps fresh pages: 32,768 faults.
  assert _page_faults_of_filling(num_bytes) < 100


def test_user_malloc_variables_take_precedence(monkeypatch):
  monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
  assert not host_memory.retain_freed_memory.__wrapped__()


TCMALLOC = ctypes.util.find_library("tcmalloc_minimal")


@pytest.mark.skipif(TCMALLOC is None,
                    reason="apt-get install -y libtcmalloc-minimal4")
@pytest.mark.parametrize("preload", [False, True])
def test_a_preloaded_allocator_is_seen_and_left_alone(preload):
  code = ("from jaxwm import host_memory; "
          "print(host_memory.preloaded_allocator(), "
          "host_memory.allocator_name(), host_memory.retain_freed_memory())")
  env = {**os.environ, "LD_PRELOAD": TCMALLOC if preload else ""}
  out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  # glibc's settings are applied only without a preloaded allocator.
  assert out == (["tcmalloc", "tcmalloc", "False"] if preload else
                 ["None", "libc", str(GLIBC_DEFAULTS)])
