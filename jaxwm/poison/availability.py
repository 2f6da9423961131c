"""Availability poisons: release data that trains useless models.

Fowl et al. perturb every training image within an l_inf ball so that a
model trained from scratch on the released set generalises poorly. Three
methods share :func:`poison`:

* ``availability`` (Section 2.2): align the training gradient of the
  perturbed data with the gradient of the reverse cross-entropy
  -log(1 - p_y) on the clean data (Eq. 3-4);
* ``tensorclog`` (Section 3.3, re-implemented in the same crafting loop as
  the paper does): minimise the norm of the training gradient;
* ``random_noise`` (Section 3.3): fixed random noise of the maximal size,
  eps times a uniform random sign per pixel.

The owner keeps an :class:`AvailabilityKey`: which samples were perturbed
and by how much (in uint8 levels), saved with a SHA-256 manifest, so the
clean set can be restored and the release proven later.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxwm import alignment
from jaxwm import fields
from jaxwm import secure_files
from jaxwm.data.dataset import Dataset
from jaxwm.data.splits import stratified_indices

# The methods that craft against a surrogate; random_noise needs none.
CRAFTED_METHODS = ("availability", "tensorclog")
METHODS = CRAFTED_METHODS + ("random_noise",)
FORMAT = "jaxwm.AvailabilityKey/v2"


@dataclasses.dataclass(frozen=True, eq=False)
class AvailabilityKey:
  """The owner's record of an availability poison.

  Attributes:
    method: one of :data:`METHODS`.
    epsilon: the l_inf radius in (0, 1] pixel units.
    poisoned_indices: int64 [M], sorted indices of the perturbed samples.
    num_samples: N, the size of the released set the indices refer to.
    perturbation: int16 [M, H, W, C], released minus clean uint8 pixels.
    seed: uint32 key data of the jax.random key the poison was drawn with.
    objective: the crafting objective of the kept trial (NaN for
      ``random_noise``, which has none).
  """

  method: str
  epsilon: float
  poisoned_indices: np.ndarray
  num_samples: int
  perturbation: np.ndarray
  seed: np.ndarray
  objective: float = math.nan

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"method {self.method!r} is not one of {METHODS}.")
    epsilon = fields.number(self.epsilon, "epsilon")
    if not 0.0 < epsilon <= 1.0:
      raise ValueError(f"epsilon={self.epsilon} must be in (0, 1].")
    num_samples = fields.integer(self.num_samples, "num_samples", low=1)
    indices = fields.index_array(self.poisoned_indices, "poisoned_indices",
                                 num_samples)
    perturbation = np.asarray(self.perturbation)
    if perturbation.ndim != 4 or perturbation.shape[0] != indices.shape[0]:
      raise ValueError(
          f"poisoned_indices {indices.shape} and perturbation "
          f"{perturbation.shape} must be [M] and [M, H, W, C].")
    if not np.issubdtype(perturbation.dtype, np.integer):
      raise ValueError(
          f"perturbation must hold integer uint8-level differences, got "
          f"dtype {perturbation.dtype}.")
    levels = math.floor(255 * epsilon + 1e-6)
    if perturbation.size and np.abs(perturbation.astype(np.int32)).max(
    ) > levels:
      raise ValueError(
          f"the perturbation exceeds epsilon={self.epsilon} ({levels} levels).")
    objective = self.objective
    if not (isinstance(objective, (float, np.floating)) and
            math.isnan(objective)):
      objective = fields.number(objective, "objective")
    object.__setattr__(self, "epsilon", epsilon)
    object.__setattr__(self, "num_samples", num_samples)
    object.__setattr__(self, "poisoned_indices", indices)
    object.__setattr__(self, "perturbation", perturbation.astype(np.int16))
    object.__setattr__(self, "seed", fields.key_data(self.seed))
    object.__setattr__(self, "objective", float(objective))

  def restore(self, released: Dataset) -> Dataset:
    """The clean dataset: ``released`` minus the recorded perturbation."""
    if (len(released) != self.num_samples or
        released.image_shape != self.perturbation.shape[1:]):
      raise ValueError(
          f"the released set ({len(released)} images {released.image_shape}) "
          f"is not the one this key was made for ({self.num_samples} images "
          f"{self.perturbation.shape[1:]}); pass the released dataset.")
    rows = self.poisoned_indices
    clean = released.images[rows].astype(np.int16) - self.perturbation
    if clean.size and (clean.min() < 0 or clean.max() > 255):
      raise ValueError("subtracting the perturbation leaves [0, 255]: the "
                       "images are not the released ones this key belongs "
                       "to.")
    images = released.images.copy()
    images[rows] = clean.astype(np.uint8)
    return released.replace(images=images)

  def save(self, prefix: str) -> str:
    """Writes PREFIX.npz/.json/.manifest.json; returns the manifest digest."""
    metadata = {"format": FORMAT, "method": self.method,
                "epsilon": self.epsilon, "num_samples": self.num_samples,
                "objective": None if math.isnan(self.objective)
                             else self.objective}
    return secure_files.save(
        prefix, {"poisoned_indices": self.poisoned_indices,
                 "perturbation": self.perturbation, "seed": self.seed},
        metadata)

  @classmethod
  def load(cls, prefix: str, digest: str | None = None) -> "AvailabilityKey":
    """Reads a key written by :meth:`save` after checking its SHA-256 hashes.

    Args:
      prefix: the path given to :meth:`save`.
      digest: the hex digest :meth:`save` returned; pass it to refuse a key
        forged together with a fresh manifest.

    Raises:
      TamperedFileError: a file was modified or renamed, the manifest does
        not match ``digest``, or a field is invalid (the message names it
        and its value).
    """
    arrays, metadata = secure_files.load(prefix, digest)
    try:
      if metadata.get("format") != FORMAT:
        raise ValueError(
            f"format {metadata.get('format')!r} is not {FORMAT!r}")
      objective = metadata["objective"]
      return cls(method=metadata["method"], epsilon=metadata["epsilon"],
                 poisoned_indices=arrays["poisoned_indices"],
                 num_samples=metadata["num_samples"],
                 perturbation=arrays["perturbation"], seed=arrays["seed"],
                 objective=math.nan if objective is None else objective)
    except KeyError as e:
      raise secure_files.TamperedFileError(
          f"{prefix} holds no valid availability key (the entry {e} is "
          "missing); use the files AvailabilityKey.save wrote.") from None
    except (TypeError, ValueError) as e:
      raise secure_files.TamperedFileError(
          f"{prefix} holds no valid availability key ({e}); use the files "
          "AvailabilityKey.save wrote.") from None


def random_sign_noise(images: np.ndarray, epsilon: float,
                      key: jax.Array) -> np.ndarray:
  """x + eps * s, s uniform in {-1, +1} per pixel, stored as uint8.

  Args:
    images: uint8 [M, H, W, C].
    epsilon: the l_inf radius in [0, 1] units.
    key: jax.random key.

  Returns:
    uint8 [M, H, W, C], clipped to [0, 255].
  """
  signs = np.asarray(jax.random.rademacher(key, images.shape, np.float32))
  return alignment.quantize(images, epsilon * signs, epsilon)


def poison(dataset: Dataset, method: str, config: alignment.CraftConfig,
           key: jax.Array, *, model=None, variables: Any = None,
           target_fraction: float = 1.0, workdir: str | None = None,
           retrain_surrogate: alignment.RetrainSurrogate | None = None,
           mesh: Mesh | None = None) -> tuple[Dataset, AvailabilityKey]:
  """Perturbs every sample of ``dataset`` with an availability poison.

  Args:
    dataset: the clean training set S.
    method: one of :data:`METHODS`.
    config: the crafting loop's settings (``epsilon`` for all methods; the
      objective is set by ``method``).
    key: jax.random key.
    model, variables: the surrogate F trained on ``dataset`` (unused by
      ``random_noise``); ``variables`` may be a list of surrogates to align
      against in turn (:func:`jaxwm.alignment.crafting.craft`).
    target_fraction: share of S (stratified) on which the target gradient
      is estimated (Fowl et al., Appendix A.7: 10% works as well as 100%).
    workdir: crafting checkpoints (resumable).
    retrain_surrogate: given a poisoned copy of ``dataset`` and a tag,
      returns the variables of a surrogate retrained on it from scratch;
      needed when ``config.retrain_every`` > 0 (bi-level rounds, which put
      the surrogate where a model trained on the poison ends up).
    mesh: device mesh; default all devices.

  Returns:
    (the released dataset, the owner's key).
  """
  if method not in METHODS:
    raise ValueError(f"availability method {method!r} is unknown; use one of "
                     f"{METHODS}.")
  indices = np.arange(len(dataset), dtype=np.int64)
  seed = np.asarray(jax.random.key_data(key), np.uint32)
  if method == "random_noise":
    released = random_sign_noise(dataset.images, config.epsilon, key)
    objective = math.nan
  else:
    if model is None or variables is None:
      raise ValueError(f"{method} needs the surrogate: pass model= and "
                       "variables=.")
    target = None
    if method == "availability":
      rows = stratified_indices(
          dataset.labels, target_fraction,
          int(jax.random.randint(jax.random.fold_in(key, 1), (), 0, 2**31 - 1)))
      target = alignment.make_target(
          model, dataset.images[rows], dataset.labels[rows],
          alignment.reverse_cross_entropy, batch_size=config.batch_size,
          mesh=mesh)
    config = dataclasses.replace(
        config,
        objective="alignment" if method == "availability" else "gradient_norm")
    result = alignment.craft(
        model, variables, dataset.images, dataset.labels, target, config, key,
        workdir=workdir, mesh=mesh,
        retrain=alignment.retrain_on_dataset(dataset, indices,
                                            retrain_surrogate))
    released = alignment.quantize(dataset.images, result.delta, config.epsilon)
    objective = result.loss
  perturbation = released.astype(np.int16) - dataset.images.astype(np.int16)
  poison_key = AvailabilityKey(method=method, epsilon=config.epsilon,
                               poisoned_indices=indices,
                               num_samples=len(dataset),
                               perturbation=perturbation, seed=seed,
                               objective=objective)
  return dataset.replace(images=released), poison_key
