"""Trigger sets for model watermarks: images out of the data distribution,
each with a class label drawn uniformly at random (Adi et al., Section 4.2:
"We sampled a set of 100 abstract images, and for each image, we randomly
selected a target class").

Randomness. One 32-byte master seed (fresh from :mod:`secrets` unless a test
passes one) drives everything through SHA-256 streams
(:mod:`jaxwm.watermark.hash_draws`): image ``i`` is drawn by its own NumPy
generator seeded with the ``i``-th 32 bytes of the ``"images"`` stream, and
labels come from the ``"labels"`` stream by rejection sampling. Images and
labels are therefore mutually independent and uncorrelated with each other,
so opening some of them (public verification, :mod:`jaxwm.watermark.public`)
reveals nothing about the rest.
"""

from __future__ import annotations

import os

import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.watermark.hash_draws import HashStream, seed_bytes

DEFAULT_SIZE = 100
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                  ".webp")
TRIGGER_SET_NAME = "trigger_set"


def _check_image_shape(image_shape) -> tuple[int, int, int]:
  shape = tuple(int(d) for d in image_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(
        f"image_shape must be (H, W, C) with positive sizes, got "
        f"{tuple(image_shape)}.")
  return shape


def _one_seed(seed: int | bytes | None) -> int | bytes:
  """``seed``, or a fresh secret one to share between images and labels."""
  return seed_bytes(None) if seed is None else seed


def _check_count(n: int) -> int:
  if int(n) < 1:
    raise ValueError(f"a trigger set needs n >= 1 images, got {n}.")
  return int(n)


def _waves(rng: np.random.Generator, y: np.ndarray, x: np.ndarray,
           channels: int) -> np.ndarray:
  """A smooth background: a sum of three random plane waves, [H, W, C]."""
  image = np.zeros(y.shape + (channels,))
  for _ in range(3):
    angle, phase = rng.uniform(0.0, 2 * np.pi, size=2)
    frequency = rng.uniform(0.5, 4.0)
    wave = np.sin(2 * np.pi * frequency *
                  (x * np.cos(angle) + y * np.sin(angle)) + phase)
    image += wave[..., None] * rng.uniform(-1.0, 1.0, size=channels)
  low, high = image.min(), image.max()
  return (image - low) / max(high - low, 1e-12)


def _ellipse(rng: np.random.Generator, y: np.ndarray,
             x: np.ndarray) -> np.ndarray:
  """A randomly placed and rotated filled ellipse, bool [H, W]."""
  cy, cx = rng.uniform(0.0, 1.0, size=2)
  ry, rx = rng.uniform(0.08, 0.4, size=2)
  angle = rng.uniform(0.0, np.pi)
  u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
  v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
  return (u / rx)**2 + (v / ry)**2 <= 1.0


def _stroke(rng: np.random.Generator, y: np.ndarray,
            x: np.ndarray) -> np.ndarray:
  """A thick random line segment, bool [H, W]."""
  (y0, x0), (y1, x1) = rng.uniform(0.0, 1.0, size=(2, 2))
  width = rng.uniform(0.02, 0.08)
  dy, dx = y1 - y0, x1 - x0
  t = np.clip(((y - y0) * dy + (x - x0) * dx) / max(dy * dy + dx * dx, 1e-12),
              0.0, 1.0)
  return np.hypot(y - (y0 + t * dy), x - (x0 + t * dx)) <= width


def _abstract_image(rng: np.random.Generator, height: int, width: int,
                    channels: int) -> np.ndarray:
  """One abstract image: waves, then ellipses and strokes, then noise."""
  y, x = np.meshgrid(np.linspace(0.0, 1.0, height),
                     np.linspace(0.0, 1.0, width), indexing="ij")
  image = _waves(rng, y, x, channels)
  shapes = [_ellipse] * int(rng.integers(1, 4)) + [_stroke] * int(
      rng.integers(1, 4))
  for index in rng.permutation(len(shapes)):
    mask = shapes[index](rng, y, x)
    opacity = rng.uniform(0.6, 1.0)
    image[mask] = (opacity * rng.uniform(0.0, 1.0, size=channels) +
                   (1 - opacity) * image[mask])
  image += rng.uniform(-0.04, 0.04, size=image.shape)
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def abstract_images(n: int, image_shape, seed: int | bytes | None = None
                    ) -> np.ndarray:
  """Procedurally generated abstract images (random waves, shapes, strokes).

  Args:
    n: number of images.
    image_shape: (H, W, C), any sizes (C = 1 grey, 3 colour, ...).
    seed: None (default) for secret randomness; an int or bytes in tests.

  Returns:
    uint8 [n, H, W, C].
  """
  n, (height, width, channels) = _check_count(n), _check_image_shape(
      image_shape)
  stream = HashStream(seed_bytes(seed), "images")
  return np.stack([
      _abstract_image(
          np.random.default_rng(int.from_bytes(stream.token(), "big")),
          height, width, channels) for _ in range(n)
  ])


def random_labels(n: int, num_classes: int,
                  seed: int | bytes | None = None) -> np.ndarray:
  """``n`` labels drawn independently and uniformly from [0, num_classes).

  Returns:
    int32 [n].
  """
  n, num_classes = _check_count(n), int(num_classes)
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
  stream = HashStream(seed_bytes(seed), "labels")
  return np.array([stream.randbelow(num_classes) for _ in range(n)], np.int32)


def abstract_trigger_set(n: int, num_classes: int, image_shape,
                         seed: int | bytes | None = None) -> Dataset:
  """A trigger set of ``n`` abstract images with uniformly random labels.

  Args:
    n: trigger set size (the paper uses 100, :data:`DEFAULT_SIZE`).
    num_classes: K of the model to be marked.
    image_shape: (H, W, C) of the model's inputs.
    seed: None (default) for a secret seed; an int or bytes in tests.

  Returns:
    Dataset with uint8 images [n, H, W, C] and int32 labels [n].
  """
  master = _one_seed(seed)
  return Dataset(abstract_images(n, image_shape, master),
                 random_labels(n, num_classes, master), num_classes,
                 name=TRIGGER_SET_NAME)


def _image_files(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f"trigger image folder {folder!r} does not exist; pass a folder of "
        f"image files ({', '.join(IMAGE_SUFFIXES)}).")
  return sorted(
      os.path.join(folder, name) for name in os.listdir(folder)
      if name.lower().endswith(IMAGE_SUFFIXES))


def folder_images(folder: str, n: int, image_shape,
                  seed: int | bytes | None = None) -> np.ndarray:
  """``n`` images chosen at random from ``folder``, resized with Pillow.

  Args:
    folder: directory holding image files (non-image files are ignored).
    n: number of images to choose, without replacement.
    image_shape: (H, W, C) with C = 1 (converted to grey) or 3 (RGB).
    seed: None (default) for a secret choice; an int or bytes in tests.

  Returns:
    uint8 [n, H, W, C], bilinearly resized to H x W.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  n, (height, width, channels) = _check_count(n), _check_image_shape(
      image_shape)
  if channels not in (1, 3):
    raise ValueError(
        f"folder images can be loaded with C = 1 or 3 channels, got "
        f"image_shape {image_shape}.")
  files = _image_files(folder)
  if len(files) < n:
    raise ValueError(
        f"{folder!r} holds {len(files)} image files but the trigger set needs "
        f"{n}; add images or lower n.")
  chosen = HashStream(seed_bytes(seed), "folder").subset(len(files), n)
  images = []
  for index in chosen:
    with Image.open(files[index]) as image:
      image = image.convert("L" if channels == 1 else "RGB").resize(
          (width, height), Image.BILINEAR)
      images.append(np.asarray(image, np.uint8).reshape(height, width,
                                                        channels))
  return np.stack(images)


def folder_trigger_set(folder: str, n: int, num_classes: int, image_shape,
                       seed: int | bytes | None = None) -> Dataset:
  """A trigger set of ``n`` images from ``folder`` with random labels.

  The images should be unrelated to the task (e.g. abstract art for a
  clothing classifier), so that their random labels are "wrong" in the sense
  of the paper's backdoor definition (Section 2.2).
  """
  master = _one_seed(seed)
  return Dataset(folder_images(folder, n, image_shape, master),
                 random_labels(n, num_classes, master), num_classes,
                 name=TRIGGER_SET_NAME)
