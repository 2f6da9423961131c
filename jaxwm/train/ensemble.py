"""Ensembles: E independent models trained at once, in one program.

An ensemble's state is the pytree of one model's :class:`TrainState` with a
leading member axis of size E on every leaf (parameters, optimizer state,
step counter and rng), its batches are ``[E, B, ...]`` (each member has its
own data order) and its step keys ``[E, 2]``. The step of
:func:`jaxwm.train.make_train_step` with ``ensemble=STRATEGY`` applies one
model's step to every member, so each member follows exactly the path it
would follow alone; only the floating-point order of a few reductions may
differ.

Strategies:

* ``"vmap"``: ``jax.vmap`` of the step, one batched program. Accelerators
  run E small models about as fast as one.
* ``"map"``: ``jax.lax.map`` over the members, a loop inside one program
  (one compiled step whatever E).
* ``"unroll"``: the members' steps written one after another into one
  program (its size grows with E).

On CPU, ``benchmarks/ensemble_throughput.py`` and a step-level timing of 8
CNNs of width 8 (batch 128, Fashion-MNIST, 2 loaded cores) gave, in images
per second: one model after another 1,170-2,020, ``unroll`` 1,500-1,570,
``map`` 820-950, ``vmap`` 810-870 (XLA:CPU turns the batched convolutions
of ``vmap`` into grouped convolutions and runs them slowly, and runs the
convolutions inside ``map``'s loop slower than at top level); so ``"auto"``
is ``"unroll"`` on CPU and ``"vmap"`` on accelerators.

When the number of members is a multiple of the number of devices, the
members are sharded over the devices (each device trains its own members
with the strategy above, through ``jax.shard_map``); otherwise every member
is trained data-parallel, its batch split over the devices as for one model.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxwm.train import compiler, sharding

STRATEGIES = ("vmap", "map", "unroll")
AUTO = "auto"
# The strategy :func:`choose_strategy` picks on each backend.
BACKEND_STRATEGIES = {"cpu": "unroll", "gpu": "vmap", "tpu": "vmap"}


def choose_strategy(strategy: str = AUTO,
                    backend: str | None = None) -> str:
  """The ensemble strategy to use: ``strategy``, or for ``"auto"`` the one
  of :data:`BACKEND_STRATEGIES` for ``backend`` (default: JAX's).

  Raises:
    ValueError: an unknown strategy (the message lists the valid ones).
  """
  if strategy == AUTO:
    return BACKEND_STRATEGIES.get(backend or jax.default_backend(), "vmap")
  if strategy not in STRATEGIES:
    raise ValueError(
        f"unknown ensemble strategy {strategy!r}; use one of "
        f"{STRATEGIES + (AUTO,)}.")
  return strategy


def members_sharded(members: int, mesh: Mesh) -> bool:
  """Whether an ensemble of ``members`` is split member-wise over ``mesh``."""
  return members % mesh.devices.size == 0


def shardings(members: int, mesh: Mesh
              ) -> tuple[NamedSharding, NamedSharding]:
  """(state and rng sharding, batch sharding) of an ensemble on ``mesh``.

  Member-wise (:func:`members_sharded`): both split the member axis.
  Otherwise the state is replicated and each batch ``[E, B, ...]`` split
  along B.
  """
  if members_sharded(members, mesh):
    split = NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
    return split, split
  return (sharding.replicated(mesh),
          NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS)))


def _over_members(step: Callable, strategy: str, members: int) -> Callable:
  """``step`` applied to each of ``members`` stacked members."""
  if strategy == "vmap":
    return jax.vmap(step)
  if strategy == "map":
    return lambda state, batch, rng: jax.lax.map(
        lambda args: step(*args), (state, batch, rng))

  def unrolled(*stacked):
    outputs = [step(*member(stacked, index)) for index in range(members)]
    return stack([output[0] for output in outputs]), stack(
        [output[1] for output in outputs])

  return unrolled


def jit_ensemble_step(step: Callable, strategy: str, members: int | None,
                      mesh: Mesh, donate: bool) -> Callable:
  """The compiled ensemble step of one model's pure ``step``.

  Args:
    step: ``(state, batch, rng) -> (state, metrics)`` of one model.
    strategy: one of :data:`STRATEGIES` or ``"auto"``.
    members: E, the number of members.
    mesh: the device mesh.
    donate: donate the incoming state's buffers.
  """
  strategy = choose_strategy(strategy)
  if not isinstance(members, int) or members < 1:
    raise ValueError(
        f"an ensemble needs members >= 1 (the size of the member axis), got "
        f"{members!r}.")
  state_sharding, batch_sharding = shardings(members, mesh)
  if not members_sharded(members, mesh):
    batched = _over_members(step, strategy, members)
  else:
    batched = _over_members(step, strategy, members // mesh.devices.size)
    spec = PartitionSpec(sharding.DATA_AXIS)
    batched = jax.shard_map(batched, mesh=mesh, in_specs=(spec, spec, spec),
                            out_specs=(spec, spec))
  return compiler.jit(
      batched,
      in_shardings=(state_sharding, batch_sharding, state_sharding),
      out_shardings=(state_sharding, state_sharding),
      donate_argnums=(0,) if donate else ())


def stack(trees: Sequence[Any]) -> Any:
  """One pytree whose leaves stack those of ``trees`` along a new axis 0."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, index: int) -> Any:
  """Member ``index`` of a stacked pytree (the leaves' row ``index``)."""
  return jax.tree.map(lambda leaf: leaf[index], tree)
