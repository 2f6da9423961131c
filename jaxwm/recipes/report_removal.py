"""The report's tables of ``experiments/removal.py`` runs: the watermark x
defense matrix and the detectors.

A group may be an ablation (the same watermarked model repaired with other
settings of one defense): the settings that differ between its runs get
columns of their own, and each watermarked model's detectors are listed
once."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from jaxwm.defenses import repairs
from jaxwm.defenses.neural_cleanse import largest_small_index
from jaxwm.recipes.report_tables import (MISSING, Run, fixed, lookup,
                                         markdown_table, number, p_value)
from jaxwm.verify.levels import REJECT

RATE = fixed(3)
ENTROPY = fixed(4)


def _cell(cell: Any) -> str:
  """``success / benign accuracy / p`` of a matrix cell, ``(V)`` where
  ownership is still verified."""
  if not isinstance(cell, Mapping):
    return MISSING
  verification = cell.get("verification", {})
  verified = " (V)" if verification.get("decision") == REJECT else ""
  return (f"{RATE(cell.get('watermark_success'))} / "
          f"{RATE(cell.get('benign_accuracy'))} / "
          f"{p_value(verification.get('p_value'))}{verified}")


def _row_label(run: Run) -> list[str]:
  return [f"`{run.name}`", str(run.metrics.get("row", MISSING)),
          str(run.seed)]


def _varying_settings(runs: Sequence[Run]) -> list[str]:
  """The paths ``defenses.COLUMN.settings.NAME`` of the settings of the
  runs' columns whose values differ between runs (an ablation's
  variables), sorted."""
  paths = sorted({f"defenses.{column}.settings.{name}"
                  for run in runs for column in run.metrics.get("columns", ())
                  for name in lookup(run.config,
                                     f"defenses.{column}.settings", {})})
  return [path for path in paths
          if len({repr(_run_setting(run, path)) for run in runs}) > 1]


def _run_setting(run: Run, path: str) -> Any:
  """The setting at ``path`` (``defenses.COLUMN.settings.NAME``) of a run.
  A run whose config lacks it predates the setting, and did what the
  repair's default does (a setting is only ever added with the former
  behaviour as its default)."""
  _, column, _, name = path.split(".", 3)
  found = lookup(run.config, path, MISSING)
  if found is not MISSING:
    return found
  repair = lookup(run.config, f"defenses.{column}.repair")
  return dataclasses.asdict(repairs.make_settings(repair, {})).get(
      name, MISSING)


def _setting(value: Any) -> str:
  """A setting's value as written in a config (lists as tuples)."""
  return str(tuple(value)) if isinstance(value, list) else str(value)


def _matrix(runs: Sequence[Run]) -> str:
  columns: list[str] = []
  for run in runs:
    columns += [c for c in run.metrics.get("columns", ()) if c not in columns]
  varying = _varying_settings(runs)
  rows = [_row_label(run) +
          [_setting(_run_setting(run, path)) for path in varying] +
          [_cell(lookup(run.metrics, f"cells.{column}"))
           for column in columns]
          for run in runs if "watermark_success" in lookup(
              run.metrics, "cells.none", {})]
  header = [path.replace("defenses.", "").replace(".settings.", " ")
            for path in varying]
  return markdown_table(["run", "watermark", "seed"] + header + columns,
                        rows)


def _filtering(record: Any) -> str:
  """``successful filtering rate / TPR / FPR / AUROC`` of a filter."""
  if not isinstance(record, Mapping):
    return MISSING
  return " / ".join(RATE(record.get(name)) for name in (
      "successful_filtering_rate", "true_positive_rate",
      "false_positive_rate", "auroc"))


def _detectors(run: Run) -> list[str]:
  found = run.metrics.get("detectors", {})
  cleanse = found.get("neural_cleanse") or {}
  strip = found.get("strip")
  saliency = found.get("grad_cam")
  index = number(cleanse.get("max_anomaly_index"))
  norms = cleanse.get("l1_norms")
  return _row_label(run) + [
      MISSING if index is None or norms is None else
      f"{largest_small_index(norms):.2f} / {index:.2f}",
      str(cleanse.get("flagged_classes", MISSING)),
      MISSING if strip is None else (
          f"{ENTROPY(strip.get('mean_triggered_entropy'))} / "
          f"{ENTROPY(strip.get('mean_clean_entropy'))} / "
          f"{RATE(strip.get('auroc'))}"),
      MISSING if saliency is None else (
          f"{RATE(saliency.get('mean_triggered_share'))} / "
          f"{RATE(saliency.get('region_fraction'))}"),
      _filtering(found.get("spectral_signatures")),
      _filtering(found.get("activation_clustering")),
  ]


def _one_per_model(runs: Sequence[Run]) -> list[Run]:
  """The first run of each watermarked model (row and seed) that ran the
  detectors: the runs of an ablation share the model, and so its
  detectors."""
  first: dict[tuple[Any, Any], Run] = {}
  for run in runs:
    if "detectors" not in run.metrics:
      continue
    first.setdefault((run.metrics.get("row"), run.seed), run)
  return list(first.values())


def removal(runs: Sequence[Run]) -> str:
  """The matrix (each cell: the watermark's success after the defense, the
  benign accuracy and the owner's p-value) and the detectors per
  watermarked model, where any run ran them."""
  matrix = [
      "Each cell: watermark success (ASR-A for dataset watermarks, "
      "watermark accuracy for trigger sets) / benign accuracy / p-value of "
      "the watermark's own test; (V): ownership still verified at the "
      "run's alpha. Column `none`: the watermarked model before any "
      "defense.",
      _matrix(runs)]
  detected = _one_per_model(runs)
  if not detected:
    return "\n\n".join(matrix)
  return "\n\n".join(matrix + [
      "Detectors on the watermarked model: Neural Cleanse's largest "
      "anomaly index among the classes whose trigger is smaller than the "
      "median / among all classes, and the flagged classes (flagged: "
      "smaller than the median and index > 2); STRIP's "
      "mean entropy (bits) on triggered / clean test images and its AUROC; "
      "Grad-CAM's mean saliency share inside the trigger / the trigger's "
      "share of the image; spectral signatures and activation clustering "
      "on the training set: successful filtering rate / TPR / FPR / AUROC.",
      markdown_table(["run", "watermark", "seed",
                      "NC max anomaly index (small / all)",
                      "NC flagged", "STRIP entropy trig. / clean / AUROC",
                      "Grad-CAM share / region", "spectral signatures",
                      "activation clustering"],
                     [_detectors(run) for run in detected]),
  ])
