"""PNG grids of images and saliency maps, for the defence figures.

Needs matplotlib (a development dependency of jaxwm); the figures are drawn
without pyplot, so no display or backend is required.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_TILE_INCHES = 1.6
DPI = 120


def figure_class():
  """matplotlib's ``Figure`` (drawn with the Agg canvas, no pyplot)."""
  try:
    from matplotlib import figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
        "saving figures needs matplotlib; install it (pip install "
        "matplotlib, or pip install jaxwm[dev]).") from None
  return figure.Figure


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
  """float [N, H, W, C] with C in {1, 3} -> float [N, H, W, C] in [0, 1]."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images / 255.0
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
    raise ValueError(f"{what} must be [N, H, W, 1] or [N, H, W, 3] with "
                     f"N >= 1, got shape {images.shape}.")
  return np.clip(images.astype(np.float64), 0.0, 1.0)


def _save_grid(path: str, images: np.ndarray, maps: np.ndarray | None,
               titles: Sequence[str] | None, columns: int | None) -> None:
  if titles is not None and len(titles) != len(images):
    raise ValueError(f"{len(titles)} titles for {len(images)} images; pass "
                     "one title per image.")
  columns = min(len(images), columns or 10)
  rows = -(-len(images) // columns)
  figure = figure_class()(figsize=(_TILE_INCHES * columns,
                                    _TILE_INCHES * rows * 1.15))
  axes = figure.subplots(rows, columns, squeeze=False)
  for index, axis in enumerate(axes.flat):
    axis.set_axis_off()
    if index >= len(images):
      continue
    image = images[index]
    if image.shape[-1] == 1:
      axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
      axis.imshow(image)
    if maps is not None:
      axis.imshow(maps[index], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
    if titles is not None:
      axis.set_title(titles[index], fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=DPI)


def save_image_grid(path: str, images: np.ndarray,
                    titles: Sequence[str] | None = None,
                    columns: int | None = None) -> None:
  """Writes ``images`` as a PNG grid.

  Args:
    path: the PNG file to write.
    images: float [N, H, W, C] in [0, 1] (or uint8), C = 1 or 3.
    titles: N tile titles, or None.
    columns: tiles per row; default min(N, 10).
  """
  _save_grid(path, _check_images(images, "images"), None, titles, columns)


def save_saliency_grid(path: str, images: np.ndarray, maps: np.ndarray,
                       titles: Sequence[str] | None = None,
                       columns: int | None = None) -> None:
  """Writes ``images`` with their saliency ``maps`` overlaid, as a PNG grid.

  Args:
    path: the PNG file to write.
    images: float [N, H, W, C] in [0, 1] (or uint8), C = 1 or 3.
    maps: float [N, H, W] in [0, 1] (e.g. :func:`jaxwm.defenses.grad_cam.
      grad_cam`), drawn in the jet colour map at half opacity.
    titles: N tile titles, or None.
    columns: tiles per row; default min(N, 10).
  """
  images = _check_images(images, "images")
  maps = np.asarray(maps, np.float64)
  if maps.shape != images.shape[:3]:
    raise ValueError(f"maps must be [N, H, W] = {images.shape[:3]}, got "
                     f"{maps.shape}.")
  _save_grid(path, images, maps, titles, columns)
