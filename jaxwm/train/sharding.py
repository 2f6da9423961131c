"""Data parallelism with a device mesh and named shardings (no pmap).

The mesh has one axis, ``"data"``. Training state is replicated; batches are
split along their first axis. The same code runs on one CPU, on fake CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``), on a GPU and
on a TPU pod slice or a multi-node GPU job, where JAX's multi-controller
runtime (:func:`initialize_distributed`) runs one process per host, every
process builds the same global mesh and feeds its own rows of each batch
(:func:`process_batch_rows`, :func:`host_local_batch`).
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


def process_batch_rows(mesh: Mesh, batch_size: int) -> np.ndarray:
  """The rows of a global batch that this process feeds.

  They are the rows of the devices this process addresses, in the order
  :func:`host_local_batch` expects them (ascending).

  Args:
    mesh: the device mesh, spanning the devices of every process.
    batch_size: the global batch size, a multiple of the mesh's devices.

  Returns:
    int64 [batch_size * local devices / mesh devices], indices into the
    global batch.
  """
  shards = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
  starts = sorted({index[0].start or 0 for index in shards.values()})
  rows_per_device = batch_size // mesh.devices.size
  return (np.asarray(starts)[:, None] +
          np.arange(rows_per_device)[None, :]).reshape(-1)


def host_local_batch(local_batch: dict[str, np.ndarray],
                     mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles a global batch from each process's share of it.

  Every process passes its own rows (those of :func:`process_batch_rows`);
  the result is one global array sharded along ``"data"``.
  """
  sharding = batch_sharded(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in local_batch.items()}


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, *,
                           heartbeat_timeout_s: int = 100) -> None:
  """Joins a multi-process job; call before any other JAX operation.

  A thin call of ``jax.distributed.initialize``. On a TPU pod slice, under
  SLURM or Open MPI every argument may be left out: JAX reads them from the
  cluster. Elsewhere (a multi-node GPU job started by hand, local CPU
  processes) give all three. CPU processes exchange gradients with the
  collectives of JAX's ``jax_cpu_collectives_implementation`` (Gloo by
  default).

  Args:
    coordinator_address: ``"host:port"`` of process 0, where it serves the
      coordination service, the same on every process; None: the
      ``JAX_COORDINATOR_ADDRESS`` environment variable or the cluster's.
    num_processes: the number of processes of the job; None: the cluster's.
    process_id: this process's index, ``0 .. num_processes - 1``; None: the
      cluster's.
    heartbeat_timeout_s: a process that sends no heartbeat for this many
      seconds (it died, or its host did) counts as lost, and every other
      process is then terminated with an error naming it, instead of
      waiting for it forever.
  """
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s)
