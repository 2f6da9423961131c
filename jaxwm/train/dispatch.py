"""A bound on how far the host dispatches ahead of the devices.

JAX dispatches asynchronously: a Python loop of jitted calls returns at
once and the programs queue on the devices. Unbounded, a loop that reads
nothing back queues hundreds of sharded programs. XLA:CPU caps each
device's queue; once one device's queue is full while the others have
entered a collective that its queued programs wait behind, the process
deadlocks (seen with eight fake CPU devices on an oversubscribed machine:
7 of 10 processes training side by side hung at an all-reduce, none once
each loop kept four steps in flight). A :class:`DispatchWindow` keeps every
loop that calls sharded programs a few calls ahead, which is all the
overlap of host and device that asynchronous dispatch is for.
"""

from __future__ import annotations

import collections
from typing import Any

import jax

# How many calls the host may dispatch ahead of the devices.
MAX_IN_FLIGHT = 4


class DispatchWindow:
  """Waits for the output of the call ``limit`` calls back before the
  host dispatches more (it is long done when the devices keep up)."""

  def __init__(self, limit: int = MAX_IN_FLIGHT):
    if limit < 1:
      raise ValueError(f"limit={limit}: at least one call must be in flight")
    self._limit = limit
    self._pending: collections.deque[Any] = collections.deque()

  def push(self, output: Any) -> None:
    """Records a dispatched call's ``output`` (any pytree of arrays) and
    blocks until the oldest call beyond the window has finished."""
    self._pending.append(output)
    if len(self._pending) > self._limit:
      jax.block_until_ready(self._pending.popleft())
