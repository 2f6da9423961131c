"""Dataset ownership verification with the owner's WatermarkKey.

The key says which test images the watermark acts on (its source classes,
minus the target class of a targeted watermark), how to watermark them (its
trigger) and whether the test reads the true or the target label;
:func:`jaxwm.verify.verify_ownership` runs the queries and the paired
t-test (UBW paper, Section 4.2).
"""

from __future__ import annotations

import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey
from jaxwm.verify.dataset_ownership import PredictProba, verify_ownership
from jaxwm.verify.ttest import PairedTTestResult


def eligible_indices(key: WatermarkKey, labels: np.ndarray) -> np.ndarray:
  """Test samples the watermark acts on: its source classes, minus the
  target class of a targeted watermark.

  Args:
    key: the watermark's key.
    labels: int [N], the test set's labels.

  Returns:
    int64 [N'], the eligible rows.
  """
  eligible = np.isin(labels, key.source_classes)
  if key.targeted:
    eligible &= labels != key.target_label
  return np.flatnonzero(eligible)


def verify_dataset_ownership(predict_proba: PredictProba, key: WatermarkKey,
                             test_dataset: Dataset, m: int = 100,
                             tau: float = 0.25, seed: int = 0,
                             batch_size: int = 256) -> PairedTTestResult:
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

  Returns:
    The PairedTTestResult; the model is judged trained on the dataset when
    its p-value is below the significance level.

  Raises:
    ConfigError: before any query, for every bad m, tau, seed or
      batch_size.
    TooFewCorrectError: fewer than 2 eligible, correctly classified test
      images.
    ValueError: inputs that do not match the key.
  """
  if test_dataset.num_classes != key.num_classes:
    raise ValueError(
        f"the test set has {test_dataset.num_classes} classes but the key "
        f"was made for {key.num_classes}; use a test set of the same task.")
  triggers.check_trigger_fits(key.trigger, test_dataset.image_shape)
  excluded = f" (target {key.target_label} excluded)" if key.targeted else ""
  return verify_ownership(
      predict_proba, test_dataset,
      eligible_indices(key, test_dataset.labels), key.apply_trigger_uint8,
      target_label=key.target_label if key.targeted else None, m=m, tau=tau,
      seed=seed, batch_size=batch_size,
      candidates_name=(f"test images from the source classes "
                       f"{key.source_classes}{excluded}"))
