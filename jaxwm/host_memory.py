"""Keep freed host memory for reuse, so CPU steps stop paying page faults.

Every run of a compiled XLA:CPU program allocates its temporary buffers and
frees them when it ends: 61 MB for the Fashion-MNIST CNN's training step at
batch 128, 509 MB for ResNet-18's at batch 64. With glibc's defaults such
blocks are mapped afresh from the kernel on every run, in a per-thread
arena, and the first touch of each page is a page fault: 15,000 faults
(23 ms of system time) per CNN step and 130,000 (0.4 s) per ResNet-18 step
on a 2-core machine. One arena and mmap and trim thresholds of 2 GiB let
the allocator hand the same memory back every step, with no fault.

The arena limit only reaches threads that have not allocated yet, so
:func:`retain_freed_memory` runs when ``jaxwm`` is imported, before JAX
starts its CPU threads. It changes nothing when the C library is not glibc,
when another allocator replaces glibc's malloc (tcmalloc preloaded, as the
README's first command runs Python, faster still) or when the user set one
of glibc's own variables (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``): those win.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# mallopt() parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks below 2 GiB come from (and return to) the heap.
_THRESHOLD_BYTES = 2**31 - 1
USER_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                  "MALLOC_TRIM_THRESHOLD_")


def preloaded_allocator() -> str | None:
  """"tcmalloc" or "jemalloc" when one serves this process's malloc in
  place of the C library's (``LD_PRELOAD``), else None."""
  try:
    with open("/proc/self/maps", encoding="utf-8") as maps:
      loaded = maps.read()
  except OSError:  # Not Linux: nothing is preloaded that way.
    return None
  return next((name for name in ("tcmalloc", "jemalloc") if name in loaded),
              None)


def allocator_name() -> str:
  """The malloc serving this process, as benchmarks record it:
  :func:`preloaded_allocator`'s name, else ``"libc"``."""
  return preloaded_allocator() or "libc"


@functools.cache
def retain_freed_memory() -> bool:
  """Sets glibc to keep freed blocks for reuse; once per process.

  Returns:
    Whether the settings were applied (False off glibc, under a preloaded
    allocator or when the user set glibc's variables).
  """
  if (platform.libc_ver()[0] != "glibc" or preloaded_allocator() or
      any(name in os.environ for name in USER_VARIABLES)):
    return False
  libc = ctypes.CDLL(None)
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _THRESHOLD_BYTES),
              (_M_TRIM_THRESHOLD, _THRESHOLD_BYTES))
  return all([libc.mallopt(option, value) == 1 for option, value in settings])
