"""Which training samples a crafted poison perturbs.

* ``"all"``: every candidate (availability poisons perturb the whole set,
  Fowl et al., Section 3);
* ``"random"``: ``count`` candidates drawn uniformly;
* ``"gradient_norm"``: the ``count`` candidates with the largest gradient
  norms under the surrogate (UBW paper, Appendix B, detail 1; Sleeper
  Agent).

Candidates are the samples of ``classes`` (one class for Sleeper Agent's
target class, None for all classes).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxwm.alignment import objective
from jaxwm.data.dataset import Dataset
from jaxwm.data.splits import select_indices

SELECTIONS = ("all", "random", "gradient_norm")


def candidates(dataset: Dataset,
               classes: Sequence[int] | None = None) -> np.ndarray:
  """int64 indices of the samples whose label is in ``classes`` (None: all)."""
  if classes is None:
    return np.arange(len(dataset), dtype=np.int64)
  classes = [int(c) for c in classes]
  bad = [c for c in classes if not 0 <= c < dataset.num_classes]
  if bad or not classes:
    raise ValueError(f"classes {classes} must be a non-empty subset of "
                     f"[0, {dataset.num_classes}).")
  return np.flatnonzero(np.isin(dataset.labels, classes)).astype(np.int64)


def select_samples(dataset: Dataset, *, by: str = "all",
                   classes: Sequence[int] | None = None,
                   count: int | None = None, key: jax.Array | None = None,
                   model=None, variables: Any = None, batch_size: int = 64,
                   mesh: Mesh | None = None) -> np.ndarray:
  """The indices of the samples to perturb, sorted.

  Args:
    dataset: the training set.
    by: one of :data:`SELECTIONS`.
    classes: candidate classes; None for all.
    count: how many to choose (``"random"`` and ``"gradient_norm"``).
    key: jax.random key for ``"random"``.
    model, variables: the surrogate, for ``"gradient_norm"``.
    batch_size: per-example gradients per compiled batch.
    mesh: device mesh; default all devices.

  Returns:
    int64 [M], sorted.
  """
  if by not in SELECTIONS:
    raise ValueError(f"selection {by!r} is unknown; use one of {SELECTIONS}.")
  pool = candidates(dataset, classes)
  if by == "all":
    return pool
  if count is None or not 0 < count <= pool.size:
    raise ValueError(
        f"cannot choose count={count} of {pool.size} candidates; pass a count "
        "in [1, candidates] (lower the poisoning rate or widen the classes).")
  if by == "random":
    if key is None:
      raise ValueError("selection 'random' needs a key.")
    return select_indices(pool, count, key)
  if model is None or variables is None:
    raise ValueError("selection 'gradient_norm' needs the surrogate's model "
                     "and variables.")
  norms = objective.per_example_gradient_norms(
      model, variables, dataset.images[pool], dataset.labels[pool],
      batch_size=batch_size, mesh=mesh)
  # Stable sort: ties are broken by the lower index.
  order = np.argsort(-norms, kind="stable")
  return np.sort(pool[order[:count]])
