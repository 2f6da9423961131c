"""The detector suite a launcher calls, on the BadNets digits model."""

import json

import jax
import numpy as np
import pytest

from jaxwm.defenses import activation_clustering as ac
from jaxwm.defenses import detector_suite
from jaxwm.defenses import neural_cleanse as nc

# Wiring only: each detector's findings are tested in its own file.
CONFIG = detector_suite.DetectorSuiteConfig(
    neural_cleanse=nc.NeuralCleanseConfig(num_epochs=2, steps_per_epoch=2,
                                          batch_size=8),
    activation_clustering=ac.ActivationClusteringConfig(reduction="pca"))


def test_watermarked_model_gets_every_detector(badnets_digits):
  trained, key, test = (badnets_digits.trained, badnets_digits.key,
                        badnets_digits.test)
  eligible = np.flatnonzero(test.labels != 0)
  report = detector_suite.run_detectors(
      trained.model, trained.variables, test, jax.random.PRNGKey(0), CONFIG,
      train=badnets_digits.marked, watermark_key=key, eligible=eligible)
  record = report.to_dict()
  json.dumps(record, allow_nan=False)
  assert record["strip"]["num_triggered"] == 100
  # The triggered images the figures show: eligible test images, stamped.
  assert report.triggered.shape == (100,) + test.image_shape
  assert np.all(report.triggered[:, -3:, -3:] == 255)
  assert record["strip"]["mean_triggered_entropy"] < 0.1
  assert record["grad_cam"]["region_fraction"] == pytest.approx(9 / 64)
  # Half of class 0 is poisoned: both filters report, whatever they find.
  for name in ("spectral_signatures", "activation_clustering"):
    assert record[name]["num_poisoned"] == key.poisoned_indices.size
    assert record[name]["num_samples"] == len(badnets_digits.marked)
  assert record["spectral_signatures"]["poison_fraction"] == pytest.approx(
      0.1, abs=1e-3)
  assert len(record["neural_cleanse"]["l1_norms"]) == 10


def test_benign_model_gets_neural_cleanse_only(badnets_digits):
  trained = badnets_digits.trained
  report = detector_suite.run_detectors(
      trained.model, trained.variables, badnets_digits.test,
      jax.random.PRNGKey(0), CONFIG)
  record = report.to_dict()
  assert record["strip"] is None and record["spectral_signatures"] is None
  assert record["neural_cleanse"]["num_epochs"] == 2
  with pytest.raises(ValueError, match="together"):
    detector_suite.run_detectors(
        trained.model, trained.variables, badnets_digits.test,
        jax.random.PRNGKey(0), CONFIG, train=badnets_digits.marked)
