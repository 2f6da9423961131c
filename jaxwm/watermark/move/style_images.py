"""Style images for MOVE's external features, brought to the content's shape.

A style image is named by a source string:

* ``"sklearn:china.jpg"`` or ``"sklearn:flower.jpg"``: scikit-learn's sample
  images (shipped with the package, read offline);
* ``"matplotlib:NAME"``: a file of matplotlib's sample data, e.g.
  ``"matplotlib:Minduka_Present_Blue_Pack.png"`` (a patterned texture; needs
  matplotlib, a development dependency of jaxwm);
* ``"texture:SEED"``: a seeded procedural texture (crossed gratings; no file);
* anything else: the path of an image file of the user's own, read with
  Pillow.

:func:`load_style_image` returns the style image as float32 [H, W, C] in
[0, 1] with the content's size and channels: the largest centred square is
cropped, resized to H x W with Pillow's antialiased bicubic filter, and
converted to grey (ITU-R BT.601 luma) when C = 1; transparent pixels are laid
over white.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

SKLEARN_IMAGES = ("china.jpg", "flower.jpg")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Crossed gratings of the procedural texture; periods in pixels.
_TEXTURE_GRATINGS = 3
_TEXTURE_PERIODS = (3.0, 7.0)


def _sklearn_image(name: str) -> np.ndarray:
  if name not in SKLEARN_IMAGES:
    raise ValueError(
        f"scikit-learn ships the sample images {', '.join(SKLEARN_IMAGES)}, "
        f"not {name!r}; use e.g. 'sklearn:flower.jpg'.")
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  return datasets.load_sample_image(name)


def _matplotlib_path(name: str) -> str:
  try:
    from matplotlib import cbook  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
        f"'matplotlib:{name}' needs matplotlib; install it (pip install "
        "matplotlib) or use an 'sklearn:' or 'texture:' style.") from None
  path = cbook.get_sample_data(name, asfileobj=False)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"matplotlib has no sample file {name!r} (looked for {path}); use "
        "e.g. 'matplotlib:Minduka_Present_Blue_Pack.png'.")
  return path


def _read_file(path: str) -> np.ndarray:
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"style image {path!r} does not exist; pass an image file, "
        "'sklearn:flower.jpg', 'matplotlib:NAME' or 'texture:SEED'.")
  with Image.open(path) as image:
    return np.asarray(image.convert("RGBA"))


def procedural_texture(size: Sequence[int], seed: int) -> np.ndarray:
  """A seeded colour texture of crossed sinusoidal gratings.

  Each of three gratings has a random orientation, a period of 3 to 7 pixels,
  a random phase and a random colour; their sum is squashed by a steep
  sigmoid into a high-contrast woven pattern.

  Args:
    size: (H, W) in pixels.
    seed: integer seed; equal seeds give equal textures.

  Returns:
    float32 [H, W, 3] in [0, 1].
  """
  height, width = (int(s) for s in size)
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
  texture = np.zeros((height, width, 3), np.float32)
  for _ in range(_TEXTURE_GRATINGS):
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(*_TEXTURE_PERIODS)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    colour = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    wave = np.sin(2.0 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle))
                  / period + phase)
    texture += wave[..., None] * colour
  return (1.0 / (1.0 + np.exp(-4.0 * texture))).astype(np.float32)


def _read_source(source: str, size: tuple[int, int]) -> np.ndarray:
  """The source as float32 RGB [h, w, 3] in [0, 1] (any size)."""
  kind, _, name = source.partition(":")
  if kind == "texture":
    try:
      seed = int(name)
    except ValueError:
      raise ValueError(
          f"a procedural style is 'texture:SEED' with an integer seed, got "
          f"{source!r}.") from None
    return procedural_texture(size, seed)
  if kind == "sklearn":
    pixels = _sklearn_image(name)
  elif kind == "matplotlib":
    pixels = _read_file(_matplotlib_path(name))
  else:
    pixels = _read_file(source)
  pixels = np.asarray(pixels, np.float32) / 255.0
  if pixels.shape[-1] == 4:  # lay transparent pixels over white
    alpha = pixels[..., 3:]
    pixels = pixels[..., :3] * alpha + (1.0 - alpha)
  return pixels


def _square_resized(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  height, width = pixels.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = pixels[top:top + side, left:left + side]
  if square.shape[:2] == size:
    return square
  channels = [Image.fromarray(square[..., c]).resize(
      (size[1], size[0]), Image.Resampling.BICUBIC) for c in range(3)]
  return np.stack([np.asarray(c) for c in channels], axis=-1)


def load_style_image(source: str, image_shape: Sequence[int]) -> np.ndarray:
  """The style image ``source`` at the content's shape.

  Args:
    source: ``"sklearn:NAME"``, ``"matplotlib:NAME"``, ``"texture:SEED"`` or
      an image file path (see the module docstring).
    image_shape: (H, W, C) of the content images; C is 1 (grey) or 3 (RGB).

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {image_shape}.")
  height, width, channels = (int(s) for s in image_shape)
  if channels not in (1, 3):
    raise ValueError(
        f"content images have {channels} channels; style images can be "
        "converted to 1 (grey) or 3 (RGB) channels.")
  if not isinstance(source, str) or not source:
    raise ValueError(f"style source must be a non-empty string, got "
                     f"{source!r}.")
  pixels = np.clip(_square_resized(_read_source(source, (height, width)),
                                   (height, width)), 0.0, 1.0)
  if channels == 1:
    pixels = (pixels @ _LUMA)[..., None]
  return pixels.astype(np.float32)
