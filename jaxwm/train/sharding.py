"""Data parallelism with a device mesh and named shardings (no pmap).

The mesh has one axis, ``"data"``. Training state is replicated; batches are
split along their first axis. The same code runs on one CPU, on fake CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``), on a GPU and
on a TPU pod slice, where every process builds the same global mesh.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all global devices)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Splits the leading (batch) axis over the ``"data"`` axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(
        f"global batch size {batch_size} is not divisible by the {devices} "
        f"devices of the mesh; use a multiple of {devices}.")


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of ``tree`` on all devices of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def host_local_batch(local_batch: dict[str, np.ndarray],
                     mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles a global batch from each process's share of it.

  Every process passes its own rows (``global_batch / process_count`` of
  them); the result is one global array sharded along ``"data"``.
  """
  sharding = batch_sharded(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in local_batch.items()}


def initialize_distributed() -> None:
  """Joins a multi-host job (TPU pods, multi-node GPU); call before any JAX op."""
  jax.distributed.initialize()
