"""Watermark removal and backdoor detection: one row of the watermark x
defense matrix (UBW paper, Section 5.4.2 and Appendices C.3 and G; WILD).

:func:`run_experiment` is the whole ``experiments/removal.py`` job:

1. train (or reuse) the row's watermarked model
   (:func:`jaxwm.recipes.removal_rows.build_row`);
2. draw the defender's clean data: a stratified ``removal.clean_fraction``
   of the training images the model saw, before any watermark, with their
   true labels;
3. measure the model (column ``none``), then repair it with each defense of
   ``removal.columns`` (:mod:`jaxwm.defenses.repairs`) and measure the
   repaired model: each cell holds the benign accuracy, the watermark's
   success (ASR-A or watermark accuracy) and the owner's verification (the
   watermark's own test, with its p-value, alpha and decision); the
   fine-tuning and WILD columns also measure after every epoch, and the
   pruning column along ``removal.pruning_rates`` (``curves``);
4. run the detectors on the watermarked model
   (:func:`jaxwm.defenses.detector_suite.run_detectors`: Neural Cleanse;
   for dataset watermarks also STRIP, Grad-CAM, spectral signatures and
   activation clustering), unless ``removal.detectors`` is False (a
   repairs-only run, e.g. an ablation on new models);
5. keep the row's record in the workdir's matrix folder (named by the
   dataset, model, seed and the fingerprint of the defenses' settings) and
   draw, from every row kept there, the heatmap of the matrix and the
   curves, with the row's Neural Cleanse triggers and Grad-CAM maps.

Every repaired model is checkpointed in a folder named after its row and
column and the fingerprint of the watermarked model's folder, the clean
data's share and the repair's settings, and each curve over epochs is kept
beside it with the identity of the run it was measured on
(:mod:`jaxwm.identity`), so a rerun in the same workdir resumes. The
detectors' record and grids are kept beside the watermarked model in the
same way, so a matrix that varies only the repairs (an ablation) does not
run them again.

Metrics: ``row``, ``success_metric``, ``clean_images``, ``columns``,
``cells`` (per column, ``none`` first: ``benign_accuracy``,
``watermark_success``, ``success_metric``, ``verification``), ``curves``
(per curved column, points with ``epoch`` or ``rate``), ``detectors``
(:meth:`jaxwm.defenses.detector_suite.DetectorReport.to_dict`; absent
when they were not run) and
``figures`` (the PNG paths). The benign row has no watermark: its cells
hold only ``benign_accuracy`` and no defense runs on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any

import jax
from absl import logging

from jaxwm import data as jaxwm_data
from jaxwm import identity
from jaxwm.defenses import detector_suite
from jaxwm.defenses import grad_cam
from jaxwm.defenses import neural_cleanse
from jaxwm.defenses import pruning
from jaxwm.defenses import repairs
from jaxwm.fingerprint import fingerprint
from jaxwm.recipes import removal_figures
from jaxwm.recipes.common import model_dir
from jaxwm.config_checks.removal import ROWS
from jaxwm.recipes.removal_rows import Row, build_row
from jaxwm.train import recipe

NONE = "none"
# Repairs that train epoch by epoch and take the engine's on_epoch_end:
# measured after each epoch (a curve).
EPOCH_CURVES = ("fine_tuning", "wild")
PRUNING = "pruning"
CURVE_FILE = "removal_curve.json"
DETECTORS_FILE = "detectors.json"
# The engine's key stream of each repair, and the detectors' key stream.
REPAIR_STREAMS = {name: 100 + i for i, name in enumerate(repairs.REPAIRS)}
DETECTOR_STREAM = 3000
# The figures drawn from every row of the matrix folder: (file, curves,
# abscissa, its label).
CURVE_FIGURES = (
    ("fine_tuning_curves.png", ("fine_tuning_fc", "fine_tuning_head"),
     "epoch", "epochs"),
    ("wild_curves.png", ("wild_ce", "wild_js", "fine_tuning_all"), "epoch",
     "epochs"),
    ("pruning_curves.png", (PRUNING,), "rate", "pruning rate"),
)


def repair_settings(config, column: str) -> tuple[str, Any]:
  """(repair name, settings) of ``column`` from ``config.defenses``."""
  block = config.defenses[column]
  return block.repair, repairs.make_settings(block.repair,
                                             block.settings.to_dict())


def _epoch_curve(row: Row, folder: str, stream: int, clean, settings,
                 none_cell: dict[str, Any]):
  """The ``on_epoch_end`` that measures the repaired model after each epoch
  and keeps the points in ``folder`` (:data:`CURVE_FILE`), and the list of
  points (epoch 0: the model before the repair)."""
  path = os.path.join(folder, CURVE_FILE)
  record = {**recipe.measurement_identity(row.config, stream, clean=clean,
                                          test=row.test),
            "settings": dataclasses.asdict(settings)}
  kept = identity.read_json(path, record, what="the repair's curve") or []
  measured = {int(point["epoch"]): point for point in kept}
  measured[0] = {"epoch": 0, **none_cell}

  def on_epoch_end(epoch: int, state) -> None:
    measured[epoch] = {"epoch": epoch, **row.measure(
        dataclasses.replace(row.model, state=state))}
    identity.write_json(path, record, _ordered(measured))

  return on_epoch_end, measured


def _ordered(measured: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
  return [measured[epoch] for epoch in sorted(measured)]


def _repair(config, row: Row, clean, column: str, workdir: str,
            none_cell: dict[str, Any]
            ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
  """The cell of ``column`` and its curve (None for a repair without)."""
  name, settings = repair_settings(config, column)
  stream = REPAIR_STREAMS[name]
  folder = model_dir(workdir, f"{row.name}_{column}", row.config,
                     os.path.basename(row.folder),
                     config.removal.clean_fraction, name,
                     dataclasses.asdict(settings))
  if name in EPOCH_CURVES:
    on_epoch_end, measured = _epoch_curve(row, folder, stream, clean,
                                          settings, none_cell)
    repaired = repairs.get_repair(name).run(
        row.config, row.model, clean, settings, workdir=folder,
        stream=stream, on_epoch_end=on_epoch_end)
    return row.measure(repaired), _ordered(measured)
  repaired = repairs.run_repair(name, row.config, row.model, clean, settings,
                                workdir=folder, stream=stream)
  cell = row.measure(repaired)
  if name != PRUNING:
    return cell, None
  ranking = pruning.rank_channels(row.model, clean)
  curve = [{"rate": float(rate),
            **row.measure(pruning.prune(row.model, ranking, rate))}
           for rate in config.removal.pruning_rates]
  return cell, curve


def matrix_dir(config, workdir: str) -> str:
  """The folder of the matrix's rows and figures: one per dataset, model,
  seed and defense settings."""
  dataset = re.sub(r"[^A-Za-z0-9]+", "_", config.dataset).strip("_")
  return os.path.join(workdir, f"matrix_{dataset}_{config.model}_seed"
                      f"{config.seed}-" + fingerprint(
                          config.removal.to_dict(),
                          config.defenses.to_dict()))


def _detectors(config, row: Row, workdir: str,
               folder: str) -> tuple[dict[str, Any], dict[str, str]]:
  """The detectors' record and the paths of their image grids in
  ``folder``.

  Both are kept beside the watermarked model, in a folder named after its
  folder and the detectors' settings (:data:`DETECTORS_FILE` and the
  PNGs), so that another matrix of the same model (an ablation of one
  repair) or a rerun reuses them.
  """
  settings = repairs.with_overrides(detector_suite.DetectorSuiteConfig(),
                                    config.detectors.to_dict(), "detectors")
  kept = model_dir(workdir, f"{row.name}_detectors", row.config,
                   os.path.basename(row.folder), dataclasses.asdict(settings))
  path = os.path.join(kept, DETECTORS_FILE)
  record = {
      "model_folder": os.path.basename(row.folder),
      "settings": dataclasses.asdict(settings),
      "key": [config.seed, DETECTOR_STREAM],
      **identity.code_versions(),
      "test": identity.dataset_identity(row.test),
      "train": identity.dataset_identity(row.train)}
  found = identity.read_json(path, record, what="the detectors' record")
  if found is None:
    report, grids = _run_detectors(config, row, settings, kept)
    found = {"report": report, "figures": grids}
    identity.write_json(path, record, found)
  else:
    logging.info("%s: detectors reused from %s", row.name, kept)
  figures = {}
  for kind, name in found["figures"].items():
    figures[kind] = os.path.join(folder, name)
    shutil.copyfile(os.path.join(kept, name), figures[kind])
  return found["report"], figures


def _run_detectors(config, row: Row, settings, folder: str
                   ) -> tuple[dict[str, Any], dict[str, str]]:
  """Runs the detectors on the row's model and draws their grids in
  ``folder``; returns the detectors' record and {figure: file name}."""
  key = jax.random.fold_in(jax.random.key(config.seed), DETECTOR_STREAM)
  model = row.model
  dataset_watermark = {} if row.key is None else dict(
      train=row.train, watermark_key=row.key, eligible=row.eligible)
  report = detector_suite.run_detectors(model.model, model.variables,
                                        row.test, key, settings,
                                        **dataset_watermark)
  os.makedirs(folder, exist_ok=True)
  grids = {"neural_cleanse": f"neural_cleanse_{row.name}.png"}
  neural_cleanse.save_trigger_grid(
      os.path.join(folder, grids["neural_cleanse"]), report.neural_cleanse)
  if report.grad_cam is not None:
    grids["grad_cam"] = f"grad_cam_{row.name}.png"
    grad_cam.save_trigger_saliency_grid(
        os.path.join(folder, grids["grad_cam"]), report.triggered,
        report.grad_cam)
  return report.to_dict(), grids


def _keep_row(folder: str, record: dict[str, Any]) -> None:
  """Writes the row's record to ``folder/<row>.json`` atomically."""
  path = os.path.join(folder, f"{record['row']}.json")
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)


def _draw_matrix(folder: str, columns: list[str]) -> dict[str, str]:
  """Draws the heatmap and the curves of every row kept in ``folder``."""
  records = []
  for name in ROWS:
    path = os.path.join(folder, f"{name}.json")
    if os.path.exists(path):
      with open(path) as f:
        record = json.load(f)
      if "watermark_success" in record["cells"][NONE]:
        records.append(record)
  figures = {}
  if records:
    figures["heatmap"] = os.path.join(folder, "heatmap.png")
    removal_figures.save_heatmap(figures["heatmap"], records, columns)
  for file_name, curves, x_key, x_label in CURVE_FIGURES:
    if any(record["curves"].get(c) for record in records for c in curves):
      figures[file_name[:-4]] = os.path.join(folder, file_name)
      removal_figures.save_curves(figures[file_name[:-4]], records, curves,
                                  x_key, x_label)
  return figures


def run_experiment(config, workdir: str,
                   metrics: dict[str, Any] | None = None) -> dict[str, Any]:
  """The whole experiment; returns the launcher's ``outcome`` mapping.

  Args:
    config: a config from ``configs/removal.py``.
    workdir: where models, keys, curves and the matrix go (reused across
      runs and rows).
    metrics: the dict to fill, stage by stage, as values are measured (the
      launcher's, so that a failure still reports them); default a new one.
      The metrics are those of the module docstring.
  """
  metrics = {} if metrics is None else metrics
  row = build_row(config, workdir)
  clean, _ = jaxwm_data.disjoint_split(row.clean,
                                       config.removal.clean_fraction,
                                       config.seed)
  columns = [NONE] + list(config.removal.columns) if row.watermarked else [
      NONE]
  none_cell = row.measure(row.model)
  metrics.update(row=row.name, success_metric=row.success_metric,
                 clean_images=len(clean), columns=columns,
                 cells={NONE: none_cell}, curves={})
  for column in columns[1:]:
    logging.info("%s: %s", row.name, column)
    cell, curve = _repair(config, row, clean, column, workdir, none_cell)
    metrics["cells"][column] = cell
    if curve is not None:
      metrics["curves"][column] = curve
  folder = matrix_dir(config, workdir)
  os.makedirs(folder, exist_ok=True)
  figures = {}
  if config.removal.detectors:
    metrics["detectors"], figures = _detectors(config, row, workdir, folder)
  _keep_row(folder, {name: metrics[name] for name in (
      "row", "success_metric", "columns", "cells", "curves")})
  metrics["figures"] = {**figures, **_draw_matrix(folder, columns)}
  return {"dataset": config.dataset, "model": config.model,
          "metrics": metrics}
