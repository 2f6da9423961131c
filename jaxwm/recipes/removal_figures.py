"""The removal matrix's figures: a heatmap of the matrix and curves of
the repairs over epochs or pruning rates (matplotlib, no pyplot).

Each function takes row records as :mod:`jaxwm.recipes.removal` keeps them
(``{"row", "columns", "cells", "curves"}``, a cell being ``{"benign_accuracy",
"watermark_success", "verification": {"decision", ...}}``), so that a
figure shows every row measured in one workdir.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from jaxwm.defenses.image_grids import DPI, figure_class
from jaxwm.verify.levels import REJECT

_PANEL_INCHES = 3.0


def _number(value: Any) -> float:
  """A float metric, or NaN for ``{"error": ...}`` and missing values."""
  return float(value) if isinstance(value, (int, float)) else math.nan


def verified(cell: Mapping[str, Any]) -> bool:
  """Whether the owner's test rejected H0 (ownership verified) in ``cell``."""
  return cell.get("verification", {}).get("decision") == REJECT


def save_heatmap(path: str, records: Sequence[Mapping[str, Any]],
                 columns: Sequence[str]) -> None:
  """Writes the matrix as a heatmap PNG: rows = watermarks, columns =
  defenses, colour = the watermark's success after the defense (ASR-A or
  watermark accuracy), each cell annotated with that success, the benign
  accuracy and ``V`` where ownership is still verified.

  Args:
    path: the PNG file to write.
    records: the row records, in display order.
    columns: the defenses, in display order (``"none"`` first).
  """
  success = np.array([[_number(record["cells"].get(column, {}).get(
      "watermark_success")) for column in columns] for record in records])
  figure = figure_class()(figsize=(1.1 * len(columns) + 2,
                                   0.7 * len(records) + 1.6))
  axis = figure.subplots()
  image = axis.imshow(np.ma.masked_invalid(success), cmap="viridis",
                      vmin=0.0, vmax=1.0, aspect="auto")
  for i, record in enumerate(records):
    for j, column in enumerate(columns):
      cell = record["cells"].get(column)
      if cell is None:
        continue
      text = (f"{_number(cell.get('watermark_success')):.2f}\n"
              f"BA {_number(cell['benign_accuracy']):.2f}"
              f"{' V' if verified(cell) else ''}")
      axis.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if success[i, j] < 0.6 else "black")
  axis.set_xticks(range(len(columns)), columns, rotation=30, ha="right",
                  fontsize=8)
  axis.set_yticks(range(len(records)), [r["row"] for r in records],
                  fontsize=8)
  axis.set_title("watermark success after each defense (BA: benign "
                 "accuracy; V: ownership verified)", fontsize=8)
  figure.colorbar(image, ax=axis, fraction=0.03)
  figure.tight_layout()
  figure.savefig(path, dpi=DPI)


def save_curves(path: str, records: Sequence[Mapping[str, Any]],
                curves: Sequence[str], x_key: str, x_label: str) -> None:
  """Writes one panel per row: benign accuracy (solid) and watermark
  success (dashed) along each of ``curves`` (the layout of the UBW paper's
  Figures 6-7 and of WILD's curves over epochs).

  Args:
    path: the PNG file to write.
    records: the row records with their ``curves``; rows without any of
      ``curves`` are left out.
    curves: the curve names to draw (e.g. ``("fine_tuning_fc",)``).
    x_key: the points' abscissa (``"epoch"`` or ``"rate"``).
    x_label: its axis label.
  """
  shown = [r for r in records if any(r["curves"].get(c) for c in curves)]
  if not shown:
    return
  figure = figure_class()(figsize=(_PANEL_INCHES * len(shown),
                                   _PANEL_INCHES))
  axes = figure.subplots(1, len(shown), squeeze=False)[0]
  colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
  for axis, record in zip(axes, shown):
    for colour, name in zip(colours, curves):
      points = record["curves"].get(name) or []
      x = [point[x_key] for point in points]
      axis.plot(x, [_number(p["benign_accuracy"]) for p in points],
                color=colour, label=f"{name}: BA")
      axis.plot(x, [_number(p.get("watermark_success")) for p in points],
                color=colour, linestyle="--",
                label=f"{name}: {record.get('success_metric')}")
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel(x_label, fontsize=8)
    axis.set_title(record["row"], fontsize=9)
    axis.legend(fontsize=6)
  figure.tight_layout()
  figure.savefig(path, dpi=DPI)
