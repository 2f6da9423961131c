"""The in-memory image classification dataset every part of jaxwm exchanges."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Images and labels held in host memory, validated on construction.

  Attributes:
    images: uint8 array [N, H, W, C] (NHWC, values 0..255).
    labels: int32 array [N] with values in [0, num_classes).
    num_classes: K, the number of classes.
    class_names: K names, one per class.
    name: a short identifier such as ``"fashion_mnist"``.
  """

  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...] = ()
  name: str = "dataset"

  def __post_init__(self):
    images = np.asarray(self.images)
    labels = np.asarray(self.labels)
    if images.ndim != 4:
      raise ValueError(
          f"images must have rank 4 [N, H, W, C], got shape {images.shape}; "
          "add a channel axis with images[..., None] for grey images.")
    if images.dtype != np.uint8:
      raise TypeError(
          f"images must be uint8 in 0..255, got dtype {images.dtype}; convert "
          "float images in [0, 1] with np.round(x * 255).astype(np.uint8).")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
      raise ValueError(
          f"labels must have shape [N] = [{images.shape[0]}], got "
          f"{labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
      raise TypeError(f"labels must be integers, got dtype {labels.dtype}.")
    num_classes = int(self.num_classes)
    if num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")
    if labels.size:
      low, high = int(labels.min()), int(labels.max())
      if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"label {bad} is out of range [0, {num_classes}); fix the labels "
            "or pass the right num_classes.")
    names = tuple(str(n) for n in self.class_names) or tuple(
        str(k) for k in range(num_classes))
    if len(names) != num_classes:
      raise ValueError(
          f"class_names has {len(names)} entries but num_classes is "
          f"{num_classes}.")
    object.__setattr__(self, "images", images)
    object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "class_names", names)

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C)."""
    return tuple(self.images.shape[1:])

  def take(self, indices: Sequence[int] | np.ndarray) -> "Dataset":
    """The examples at ``indices`` (a copy), same classes and name."""
    indices = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(
        self, images=self.images[indices], labels=self.labels[indices])

  def read(self, indices: Sequence[int] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, H, W, C] images, int32 [n] labels) at ``indices``."""
    indices = np.asarray(indices, dtype=np.int64)
    return self.images[indices], self.labels[indices]

  def with_examples(self, indices: np.ndarray, images: np.ndarray,
                    labels: np.ndarray) -> "Dataset":
    """A copy with the examples at ``indices`` (int [M]) replaced by
    ``images`` (uint8 [M, H, W, C]) and ``labels`` (int [M])."""
    all_images, all_labels = self.images.copy(), self.labels.copy()
    all_images[indices], all_labels[indices] = images, labels
    return self.replace(images=all_images, labels=all_labels)

  def replace(self, **changes) -> "Dataset":
    """A new, validated Dataset with some fields replaced."""
    return dataclasses.replace(self, **changes)

  def float_images(self) -> np.ndarray:
    """Images as float32 in [0, 1], [N, H, W, C]."""
    return self.images.astype(np.float32) / 255.0


def check_same_task(train: Dataset, test: Dataset, source: str) -> None:
  """Raises ValueError unless two splits share image shape and classes.

  A model trained on one split is evaluated on the other; this catches a
  mismatch when the data is loaded, not later inside the model.

  Args:
    train, test: the two splits.
    source: where they came from (e.g. the dataset name), for the message.
  """
  if train.image_shape != test.image_shape:
    raise ValueError(
        f"{source}: the train images have shape {train.image_shape} but the "
        f"test images {test.image_shape}; store both splits at one image "
        "size and channel count.")
  if train.class_names != test.class_names:
    raise ValueError(
        f"{source}: the train split has {train.num_classes} classes "
        f"{list(train.class_names)} but the test split {test.num_classes} "
        f"{list(test.class_names)}; give both splits the same classes.")
