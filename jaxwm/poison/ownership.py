"""Dataset ownership verification with the owner's WatermarkKey.

The key says which test images the watermark acts on (its source classes,
minus the target class of a targeted watermark), how to watermark them (its
trigger) and whether the test reads the true or the target label;
:func:`jaxwm.verify.verify_ownership` runs the queries and the paired
t-test (UBW paper, Section 4.2).

The owner may measure and verify on fewer classes than the watermark acts
on: the UBW paper poisons images of every class but computes ASR-A, ASR-C
and D_p on, and samples its verification images from, the triggered test
images of one source class, class 0 (Appendix C.2). ``source_classes``
selects those classes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.verify.dataset_ownership import PredictProba, verify_ownership
from jaxwm.verify.ttest import PairedTTestResult


def evaluated_classes(key: WatermarkKey,
                      source_classes: Sequence[int] | None = None
                      ) -> tuple[int, ...]:
  """The classes whose test images are measured and verified.

  Args:
    key: the watermark's key.
    source_classes: the classes to measure on (the UBW paper's evaluation:
      ``(0,)``); None for all the key's source classes.

  Returns:
    The sorted classes: the key's source classes (within
    ``source_classes`` when given), minus the target class of a targeted
    watermark.

  Raises:
    ValueError: ``source_classes`` leaves no class the watermark acts on
      (e.g. only the target class of a targeted watermark).
  """
  classes = set(key.source_classes)
  if source_classes is not None:
    classes &= {int(c) for c in source_classes}
  if key.targeted:
    classes.discard(key.target_label)
  if not classes:
    raise ValueError(
        f"source_classes={tuple(source_classes or ())} leaves no class the "
        f"{key.method} watermark acts on (its source classes "
        f"{key.source_classes}, target {key.target_label}); pick classes "
        "among its source classes other than the target, e.g. (0,) with "
        "target 1.")
  return tuple(sorted(classes))


def eligible_indices(key: WatermarkKey, labels: np.ndarray,
                     source_classes: Sequence[int] | None = None
                     ) -> np.ndarray:
  """Test samples the watermark acts on: those of
  :func:`evaluated_classes`.

  Args:
    key: the watermark's key.
    labels: int [N], the test set's labels.
    source_classes: restricts them to these classes; None for all.

  Returns:
    int64 [N'], the eligible rows.
  """
  return np.flatnonzero(np.isin(labels,
                                evaluated_classes(key, source_classes)))


def verify_dataset_ownership(predict_proba: PredictProba, key: WatermarkKey,
                             test_dataset: Dataset, m: int = 100,
                             tau: float = 0.25, seed: int = 0,
                             batch_size: int = 256,
                             source_classes: Sequence[int] | None = None
                             ) -> PairedTTestResult:
  """Tests whether a suspect model was trained on the watermarked dataset.

  Args:
    predict_proba: the black-box suspect: float images [B, H, W, C] in
      [0, 1] -> probabilities [B, K].
    key: the owner's WatermarkKey.
    test_dataset: held-out images with true labels, same classes as the
      watermarked training set.
    m: how many images to test (100 in Appendix C.2); if fewer eligible
      images are classified correctly, all of them are used (a warning is
      logged) and the result's ``m`` says how many.
    tau: the margin of H0 (Section 5.3 uses 0.25).
    seed: seeds the random choice of test images.
    batch_size: images per call of ``predict_proba``.
    source_classes: sample the test images from these classes only (the
      UBW paper: ``(0,)``, Appendix C.2); None for all the classes the
      watermark acts on.

  Returns:
    The PairedTTestResult; the model is judged trained on the dataset when
    its p-value is below the significance level.

  Raises:
    ConfigError: before any query, for every bad m, tau, seed or
      batch_size.
    TooFewCorrectError: fewer than 2 eligible, correctly classified test
      images.
    ValueError: inputs that do not match the key, or ``source_classes``
      with no class the watermark acts on.
  """
  if test_dataset.num_classes != key.num_classes:
    raise ValueError(
        f"the test set has {test_dataset.num_classes} classes but the key "
        f"was made for {key.num_classes}; use a test set of the same task.")
  triggers.check_trigger_fits(key.trigger, test_dataset.image_shape)
  classes = evaluated_classes(key, source_classes)
  return verify_ownership(
      predict_proba, test_dataset,
      eligible_indices(key, test_dataset.labels, classes),
      key.apply_trigger_uint8,
      target_label=key.target_label if key.targeted else None, m=m, tau=tau,
      seed=seed, batch_size=batch_size,
      candidates_name=f"test images from the classes {classes}")
