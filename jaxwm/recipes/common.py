"""What several recipes share: model folders and a suspect's watermark
metrics."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from jaxwm import identity
from jaxwm import metrics as metrics_lib
from jaxwm import monitor, results
from jaxwm.data.dataset import Dataset
from jaxwm.poison.ownership import eligible_indices
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.verify import PredictProba


def model_dir(workdir: str, role: str, config, *parts: Any) -> str:
  """``workdir/<role>_<dataset>_<model>_seed<k>-<fingerprint>``.

  The fingerprint (:func:`jaxwm.identity.folder_fingerprint`) covers
  everything the benign model depends on (dataset, data directory, model,
  training fraction, recipe, seed, jaxwm version) and ``parts``.
  """
  dataset = re.sub(r"[^A-Za-z0-9]+", "_", config.dataset).strip("_")
  return os.path.join(
      workdir, f"{role}_{dataset}_{config.model}_seed{config.seed}-"
      f"{identity.folder_fingerprint(config, *parts)}")


def picture_samples(name: str, data: Dataset, indices: np.ndarray,
                    title: str, count: int = 16) -> None:
  """Draws the first ``count`` images of ``data`` at ``indices`` with
  their labels, as ``name.png`` in the run's pictures
  (:func:`jaxwm.monitor.add_image_grid`)."""
  chosen = np.asarray(indices)[:count]
  if chosen.size:
    monitor.add_image_grid(name, data.images[chosen],
                           [f"label {y}" for y in data.labels[chosen]],
                           title)


def _rate(compute: Callable[[], Any]) -> float | dict[str, str]:
  """``compute()`` as a float, or ``{"error": why}`` when the rate is over
  an empty set of samples."""
  try:
    return float(compute())
  except metrics_lib.UndefinedMetricError as error:
    return results.not_computed(str(error))


def watermark_metrics(predict_proba: PredictProba, key: WatermarkKey,
                      test_dataset: Dataset,
                      source_classes: Sequence[int] | None = None
                      ) -> dict[str, Any]:
  """Benign accuracy, ASR-A, ASR-C and dispersibility of a suspect model.

  Benign accuracy is measured on the whole test set; the other metrics on
  the triggered versions G(x) of the eligible test images
  (:func:`jaxwm.poison.ownership.eligible_indices`: those of
  ``source_classes``, the UBW paper's evaluation, or of every class the
  watermark acts on), as in Section 5.1:
  D_p (Definition 1) from the hard predictions, D_s and D_c (Definition 2)
  from the probabilities. ``top_class_share`` is the largest share of triggered
  images predicted as one class, a plain reading of how targeted the
  model's response is.

  Args:
    predict_proba: float images [B, H, W, C] in [0, 1] -> probabilities
      [B, K] (e.g. ``TrainedModel.predict_proba``).
    key: the watermark's key.
    test_dataset: the test set.
    source_classes: the classes measured (the paper's: ``(0,)``); None for
      every class the watermark acts on.

  Returns:
    {"benign_accuracy", "asr_a", "asr_c", "d_p", "d_s", "d_c",
    "top_class_share"}, floats; an attack success rate over no qualifying
    sample (ASR-C of a model that gets no eligible test image right) is
    ``{"error": why}``.
  """
  benign = np.asarray(predict_proba(test_dataset.float_images()))
  eligible = eligible_indices(key, test_dataset.labels, source_classes)
  labels = test_dataset.labels[eligible]
  triggered = np.asarray(predict_proba(
      key.apply_trigger_uint8(test_dataset.images[eligible]).astype(
          np.float32) / 255.0), np.float32)
  triggered_classes = np.argmax(triggered, axis=1)
  counts = np.bincount(triggered_classes, minlength=key.num_classes)
  values = {
      "benign_accuracy": metrics_lib.benign_accuracy(benign,
                                                     test_dataset.labels),
      "d_p": metrics_lib.prediction_dispersibility(
          triggered_classes, labels, key.num_classes),
      "d_s": metrics_lib.sample_dispersibility(triggered),
      "d_c": metrics_lib.class_dispersibility(triggered, labels),
      "top_class_share": counts.max() / max(1, counts.sum()),
  }
  return {
      **{name: float(value) for name, value in values.items()},
      "asr_a": _rate(lambda: metrics_lib.asr_a(triggered, labels,
                                               key.target_label)),
      "asr_c": _rate(lambda: metrics_lib.asr_c(
          triggered, benign[eligible], labels, key.target_label)),
  }
