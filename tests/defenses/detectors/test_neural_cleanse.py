"""Neural Cleanse on a BadNets digits model, and its anomaly index."""

import jax
import numpy as np
import pytest

from jaxwm.defenses import neural_cleanse as nc

# Smaller than the defaults (100 x 32 steps, lambda from 1e-3) so that it
# runs in seconds on a CPU: 8x8 masks need fewer steps and a larger L1
# weight to shrink.
FAST = nc.NeuralCleanseConfig(num_epochs=100, steps_per_epoch=10,
                              init_cost=1e-2)


def test_mad_anomaly_index_on_fixed_numbers():
  # median 3, |deviations| = 2, 1, 0, 1, 7 -> MAD = 1.4826 * 1.
  index = nc.mad_anomaly_index(np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
  np.testing.assert_allclose(index, np.array([2, 1, 0, 1, 7]) / 1.4826)
  # Only values below the median count: 10 is large, not a small trigger.
  assert nc.small_outliers(np.array([1.0, 2.0, 3.0, 4.0, 10.0]),
                           1.3).tolist() == [0]
  assert nc.small_outliers(np.array([1.0, 2.0, 3.0, 4.0, 10.0])).size == 0
  # The statistic small_outliers thresholds: 2 / 1.4826, not 10's 7 / 1.4826.
  assert nc.largest_small_index(
      np.array([1.0, 2.0, 3.0, 4.0, 10.0])) == pytest.approx(2 / 1.4826)


def test_mad_anomaly_index_refuses_undefined_values():
  with pytest.raises(ValueError, match="median absolute deviation"):
    nc.mad_anomaly_index(np.array([5.0, 5.0, 5.0, 1.0]))
  with pytest.raises(ValueError, match="K >= 2"):
    nc.mad_anomaly_index(np.array([1.0]))
  with pytest.raises(ValueError, match="cost_multiplier"):
    nc.NeuralCleanseConfig(cost_multiplier=0.5)


@pytest.fixture(scope="module")
def cleansed(badnets_digits):
  trained = badnets_digits.trained
  return nc.neural_cleanse(trained.model, trained.variables,
                           badnets_digits.test.images,
                           jax.random.PRNGKey(1), FAST)


def test_recovers_the_patch_and_flags_the_target(badnets_digits, cleansed):
  assert cleansed.masks.shape == (10, 8, 8, 1)
  assert cleansed.patterns.shape == (10, 8, 8, 1)
  assert cleansed.reached.all()
  assert np.all(cleansed.attack_success >= FAST.attack_success_threshold)
  # The target's trigger is the smallest, an outlier by the MAD rule
  # (measured anomaly index 2.6), and only the target is flagged.
  assert np.argmin(cleansed.l1_norms) == 0
  assert cleansed.flagged_classes == (0,)
  # Its mass sits on the 3x3 patch: 14% of the pixels, 83% measured.
  mask = cleansed.masks[0, ..., 0]
  share = mask[badnets_digits.region].sum() / mask.sum()
  assert share > 0.5
  record = cleansed.to_dict()
  assert record["flagged_classes"] == [0]
  assert record["max_anomaly_index"] == pytest.approx(
      cleansed.anomaly_index[0])
  assert record["max_small_anomaly_index"] == pytest.approx(
      cleansed.anomaly_index[0])


def test_the_stamped_trigger_sends_clean_images_to_the_target(
    badnets_digits, cleansed):
  trained = badnets_digits.trained
  images = badnets_digits.test.float_images()
  stamped = (1 - cleansed.masks[0]) * images + cleansed.triggers[0]
  assert np.mean(trained.predict(stamped) == 0) > 0.95


def test_trigger_grid_is_written(cleansed, tmp_path):
  pytest.importorskip("matplotlib")
  path = tmp_path / "triggers.png"
  nc.save_trigger_grid(str(path), cleansed)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_epochs_run_in_logged_chunks_find_the_same_triggers(
    badnets_digits, cleansed, monkeypatch):
  # FAST's 100 epochs in chunks of 30 (30, 30, 30, 10) against one chunk
  # of 100 (the fixture ran chunks of 10): the same keys and updates.
  trained = badnets_digits.trained
  runs = {}
  for chunk in (30, 100):
    monkeypatch.setattr(nc, "LOG_EVERY_EPOCHS", chunk)
    runs[chunk] = nc.neural_cleanse(trained.model, trained.variables,
                                    badnets_digits.test.images,
                                    jax.random.PRNGKey(1), FAST)
  for result in runs.values():
    np.testing.assert_allclose(result.masks, cleansed.masks, atol=1e-5)
    np.testing.assert_allclose(result.l1_norms, cleansed.l1_norms,
                               rtol=1e-5)
    assert result.flagged_classes == cleansed.flagged_classes
