"""Random images for benchmarks and shape tests only.

The images are uniform noise and carry no information about their labels:
never use this data for a claim about accuracy, attack success or
verification. It exists so that throughput benchmarks and shape tests can run
at any size without real data.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxwm.data.dataset import Dataset


def synthetic(num_examples: int, image_shape: Sequence[int], num_classes: int,
              seed: int) -> Dataset:
  """Random uint8 images and balanced labels (benchmarks and shape tests only).

  Args:
    num_examples: N, the number of examples.
    image_shape: (H, W, C) of every image.
    num_classes: K >= 2; every class gets floor(N / K) or ceil(N / K) labels.
    seed: integer seed; equal arguments give equal datasets.

  Returns:
    Dataset named ``"synthetic"`` with uint8 images [N, H, W, C] drawn
    uniformly from 0..255 and int32 labels [N] in a seeded random order.
  """
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(
        f"image_shape must be (H, W, C) with positive sizes, got "
        f"{image_shape}; use (H, W, 1) for grey images.")
  if num_examples < 1:
    raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num_examples,) + image_shape,
                        dtype=np.uint8)
  labels = rng.permutation(np.arange(num_examples) % num_classes)
  return Dataset(images=images, labels=labels.astype(np.int32),
                 num_classes=num_classes, name="synthetic")
