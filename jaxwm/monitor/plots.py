"""PNG pictures: training curves, image grids and histograms.

matplotlib is imported when a picture is drawn, with the Agg backend (no
display needed), so that importing jaxwm never needs it.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np

INSTALL_HINT = 'pip install "jaxwm[plots]"'


class PlotsUnavailableError(ImportError):
  """matplotlib (or tensorboardX) is not installed."""


def require(module: str):
  """Imports ``module`` (a plotting or logging library) or raises
  :class:`PlotsUnavailableError` saying how to install it."""
  try:
    return __import__(module, fromlist=["_"])
  except ImportError as error:
    raise PlotsUnavailableError(
        f"{module.split('.')[0]} is not installed, so jaxwm draws no "
        f"pictures and writes no TensorBoard log; install them with "
        f"{INSTALL_HINT}.") from error


def _pyplot():
  """matplotlib.pyplot on the Agg backend."""
  matplotlib = require("matplotlib")
  matplotlib.use("Agg", force=False)
  return require("matplotlib.pyplot")


def _save(figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  _pyplot().close(figure)
  return path


def save_curves(curves: Mapping[str, Mapping[str, Sequence[float]]],
                path: str) -> str:
  """Loss and accuracy along training, one line per model.

  Args:
    curves: {model name: {"epoch": [T], "loss": [T], "accuracy": [T]}},
      floats; "epoch" may be fractional (a progress line within an epoch).
    path: the PNG to write.

  Returns:
    ``path``.
  """
  plt = _pyplot()
  figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
  for name, curve in curves.items():
    loss_axis.plot(curve["epoch"], curve["loss"], label=name)
    accuracy_axis.plot(curve["epoch"], curve["accuracy"], label=name)
  loss_axis.set(xlabel="epoch", ylabel="training loss", yscale="log")
  accuracy_axis.set(xlabel="epoch", ylabel="training accuracy",
                    ylim=(0.0, 1.0))
  accuracy_axis.legend(fontsize="small")
  return _save(figure, path)


def save_image_grid(images: np.ndarray, path: str,
                    titles: Sequence[str] | None = None,
                    columns: int = 8, title: str | None = None) -> str:
  """A grid of images.

  Args:
    images: uint8 [N, H, W, C], C 1 or 3.
    path: the PNG to write.
    titles: N captions (e.g. the labels), or None.
    columns: images per row.
    title: the figure's title, or None.

  Returns:
    ``path``.

  Raises:
    ValueError: ``images`` is not uint8 [N, H, W, 1 or 3] with N >= 1, or
      ``titles`` has another length.
  """
  images = np.asarray(images)
  if (images.dtype != np.uint8 or images.ndim != 4 or not len(images) or
      images.shape[-1] not in (1, 3)):
    raise ValueError(
        f"images must be uint8 [N, H, W, 1 or 3] with N >= 1, got "
        f"{images.dtype} {images.shape}.")
  if titles is not None and len(titles) != len(images):
    raise ValueError(f"{len(titles)} titles for {len(images)} images; give "
                     "one per image.")
  plt = _pyplot()
  columns = min(columns, len(images))
  rows = math.ceil(len(images) / columns)
  figure, axes = plt.subplots(rows, columns, squeeze=False,
                              figsize=(1.3 * columns, 1.5 * rows))
  for index, axis in enumerate(axes.flat):
    axis.axis("off")
    if index >= len(images):
      continue
    image = images[index]
    axis.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                cmap="gray", vmin=0, vmax=255)
    if titles is not None:
      axis.set_title(str(titles[index]), fontsize="small")
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def save_histogram(values: Sequence[float], path: str, *, xlabel: str,
                   title: str | None = None,
                   lines: Mapping[str, float] | None = None,
                   log10: bool = False) -> str:
  """A histogram of ``values`` with labelled vertical reference lines.

  Args:
    values: floats [N], N >= 1.
    path: the PNG to write.
    xlabel: what the values are.
    title: the figure's title, or None.
    lines: {label: x} reference lines (e.g. alpha, the chance agreement).
    log10: histogram log10(values) (p-values spanning decades); the lines
      are given in the values' own scale.

  Returns:
    ``path``.
  """
  values = np.asarray(values, np.float64)
  if not values.size:
    raise ValueError("no values to draw a histogram of.")
  transform = np.log10 if log10 else (lambda x: x)
  plt = _pyplot()
  figure, axis = plt.subplots(figsize=(6, 4))
  axis.hist(transform(values), bins=max(5, min(30, values.size)),
            color="tab:blue", alpha=0.8)
  for (label, x), color in zip((lines or {}).items(),
                               ("tab:red", "tab:green", "tab:orange")):
    axis.axvline(transform(x), color=color, linestyle="--", label=label)
  axis.set(xlabel=f"log10 {xlabel}" if log10 else xlabel, ylabel="models",
           title=title)
  if lines:
    axis.legend(fontsize="small")
  return _save(figure, path)
