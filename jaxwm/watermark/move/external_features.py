"""MOVE's watermark: external features embedded in a few training images.

Section 5.2 (Eq. 3): the owner picks a fraction gamma (the transformation
rate, 10% in the paper) of the training set D at random, replaces those
images by their transformed versions (a style transfer,
:mod:`jaxwm.watermark.move.style`, or any ``images -> images`` function)
and keeps every label. The victim model is trained on the result; a benign
model, trained on the untouched D, serves the meta-classifier
(:mod:`jaxwm.watermark.move.meta_classifier`) as the negative example.

The owner's secret record is a :class:`MoveKey`: the transformed images,
their benign versions and labels, where they sit in D, and a fixed split of
them into images that train the meta-classifier and images kept for
verification (disjoint, so a verification never reuses an image the
meta-classifier was fitted on). It is saved through
:mod:`jaxwm.secure_files` (``.npz`` + ``.json`` + SHA-256 manifest).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.poison.poisoned_label import select_indices
from jaxwm.watermark import key_files
from jaxwm.watermark.move.style import ImageTransform

KIND = "jaxwm/move/key/v1"
TRANSFORMED_SET_NAME = "move_transformed"


def _positions(values: Any, name: str, size: int) -> np.ndarray:
  array = np.asarray(values)
  if array.ndim != 1 or (array.size and
                         not np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"{name} must be a 1-D integer array, got "
                     f"{array.dtype} {array.shape}.")
  array = array.astype(np.int64)
  if array.size and (array.min() < 0 or array.max() >= size or
                     np.any(np.diff(array) <= 0)):
    raise ValueError(
        f"{name} must be sorted, unique and in [0, {size}).")
  return array


@dataclasses.dataclass(frozen=True, eq=False)
class MoveKey(key_files.SavedKey):
  """The owner's record of a MOVE watermark.

  Attributes:
    transformed: the M transformed training images (uint8 [M, H, W, C]) with
      their kept labels (int32 [M]).
    benign_images: uint8 [M, H, W, C], the same images untransformed.
    indices: int64 [M], sorted positions of the transformed images in the
      training set.
    meta_positions: int64 [M1], sorted rows of ``transformed`` that train the
      meta-classifier.
    verification_positions: int64 [M2], sorted rows kept for verification;
      disjoint from ``meta_positions``.
    transform_rate: gamma = M / |D|.
    seed: uint32, the raw data (``jax.random.key_data``) of the key that drew
      the rows.
    transform: a JSON description of the transform (name, settings, and
      the style image's source and SHA-256 for a style transfer).
  """

  transformed: Dataset
  benign_images: np.ndarray
  indices: np.ndarray
  meta_positions: np.ndarray
  verification_positions: np.ndarray
  transform_rate: float
  seed: np.ndarray
  transform: Mapping[str, Any]
  KIND = KIND

  def __post_init__(self):
    if not isinstance(self.transformed, Dataset):
      raise TypeError(f"transformed must be a jaxwm Dataset, got "
                      f"{type(self.transformed).__name__}.")
    size = len(self.transformed)
    benign = np.asarray(self.benign_images)
    if (benign.shape != self.transformed.images.shape or
        benign.dtype != np.uint8):
      raise ValueError(
          f"benign_images must be uint8 {self.transformed.images.shape} like "
          f"the transformed images, got {benign.dtype} {benign.shape}.")
    indices = _positions(self.indices, "indices", np.iinfo(np.int64).max)
    if indices.size != size:
      raise ValueError(f"indices has {indices.size} entries for {size} "
                       "transformed images.")
    meta = _positions(self.meta_positions, "meta_positions", size)
    verification = _positions(self.verification_positions,
                              "verification_positions", size)
    if np.intersect1d(meta, verification).size:
      raise ValueError("meta_positions and verification_positions overlap; "
                       "the images that train the meta-classifier must not "
                       "verify.")
    if not 0.0 < float(self.transform_rate) <= 1.0:
      raise ValueError(f"transform_rate must be in (0, 1], got "
                       f"{self.transform_rate}.")
    object.__setattr__(self, "benign_images", benign)
    object.__setattr__(self, "indices", indices)
    object.__setattr__(self, "meta_positions", meta)
    object.__setattr__(self, "verification_positions", verification)
    object.__setattr__(self, "transform_rate", float(self.transform_rate))
    object.__setattr__(self, "seed", np.asarray(self.seed, np.uint32))
    object.__setattr__(self, "transform", dict(self.transform))

  def pairs(self, positions: np.ndarray) -> tuple[Dataset, np.ndarray]:
    """(transformed images with labels, benign images uint8 [n, H, W, C])
    at ``positions`` (rows of the key)."""
    positions = np.asarray(positions, np.int64)
    return self.transformed.take(positions), self.benign_images[positions]

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {
        prefix + "transformed_images": self.transformed.images,
        prefix + "labels": self.transformed.labels,
        prefix + "benign_images": self.benign_images,
        prefix + "indices": self.indices,
        prefix + "meta_positions": self.meta_positions,
        prefix + "verification_positions": self.verification_positions,
        prefix + "seed": self.seed,
    }

  def to_metadata(self) -> dict[str, Any]:
    return {"num_classes": self.transformed.num_classes,
            "class_names": list(self.transformed.class_names),
            "transform_rate": self.transform_rate,
            "transform": self.transform}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> MoveKey:
    get = key_files.getter(arrays, path, prefix)
    num_classes = key_files.int_entry(metadata, "num_classes", path)
    rate = key_files.entry(metadata, "transform_rate", path)
    transform = key_files.entry(metadata, "transform", path)
    class_names = tuple(key_files.entry(metadata, "class_names", path))
    return key_files.construct(path, lambda: cls(
        Dataset(get("transformed_images"), get("labels"), num_classes,
                class_names, TRANSFORMED_SET_NAME),
        get("benign_images"), get("indices"), get("meta_positions"),
        get("verification_positions"), rate, get("seed"), transform))


def _check_transformed(images: np.ndarray, expected: tuple[int, ...]
                       ) -> np.ndarray:
  images = np.asarray(images)
  if images.shape != expected or images.dtype != np.uint8:
    raise ValueError(
        f"the transform returned {images.dtype} {images.shape}; it must "
        f"return uint8 images of the input's shape {expected}.")
  return images


def embed(dataset: Dataset, transform: ImageTransform, key: jax.Array, *,
          transform_rate: float = 0.1, verification_fraction: float = 0.2,
          description: Mapping[str, Any] | None = None
          ) -> tuple[Dataset, MoveKey]:
  """Transforms a random ``transform_rate`` of ``dataset``, labels kept.

  Args:
    dataset: the owner's benign training set D.
    transform: uint8 [n, H, W, C] -> uint8 [n, H, W, C], e.g.
      :func:`jaxwm.watermark.move.style.make_style_transform`.
    key: jax.random key; it alone decides the transformed images and their
      meta/verification split.
    transform_rate: gamma, the fraction of D to transform (Section 5.2).
    verification_fraction: the share of the transformed images kept out of
      meta-classifier training, for verification.
    description: JSON record of the transform, stored in the key.

  Returns:
    (the victim's training set, the owner's MoveKey).
  """
  if not 0.0 < float(transform_rate) <= 1.0:
    raise ValueError(f"transform_rate must be in (0, 1], got "
                     f"{transform_rate}.")
  if not 0.0 < float(verification_fraction) < 1.0:
    raise ValueError(f"verification_fraction must be in (0, 1), got "
                     f"{verification_fraction}.")
  count = int(round(transform_rate * len(dataset)))
  held_out = int(round(verification_fraction * count))
  if held_out < 2 or count - held_out < 2:
    raise ValueError(
        f"{count} transformed images split {count - held_out}/{held_out} "
        "between meta-classifier training and verification; each needs at "
        "least 2. Raise transform_rate or use more training images.")
  key_select, key_split = jax.random.split(key)
  indices = select_indices(np.arange(len(dataset)), count, key_select)
  verification = select_indices(np.arange(count), held_out, key_split)
  meta = np.setdiff1d(np.arange(count), verification, assume_unique=True)
  benign = dataset.images[indices]
  transformed = _check_transformed(transform(benign), benign.shape)
  images = dataset.images.copy()
  images[indices] = transformed
  move_key = MoveKey(
      transformed=Dataset(transformed, dataset.labels[indices],
                          dataset.num_classes, dataset.class_names,
                          TRANSFORMED_SET_NAME),
      benign_images=benign, indices=indices, meta_positions=meta,
      verification_positions=verification,
      transform_rate=count / len(dataset),
      seed=np.asarray(jax.random.key_data(key), np.uint32),
      transform=dict(description or {}))
  return dataset.replace(images=images), move_key
