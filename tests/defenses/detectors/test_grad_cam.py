"""Grad-CAM on a BadNets digits model, the saliency share and the grids."""

import numpy as np
import pytest

from jaxwm.defenses import grad_cam as gc
from jaxwm.defenses import image_grids


def test_saliency_share_on_fixed_maps():
  region = np.zeros((2, 2), bool)
  region[0, 0] = True
  maps = np.array([[[3.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
  # 3 of 4 inside; an all-zero map counts as uniform: 1 pixel of 4.
  np.testing.assert_allclose(gc.saliency_share(maps, region), [0.75, 0.25])
  with pytest.raises(ValueError, match="non-negative"):
    gc.saliency_share(-maps, region)


def test_trigger_region_is_the_patch(badnets_digits):
  np.testing.assert_array_equal(gc.trigger_region(badnets_digits.key.trigger),
                                badnets_digits.region)


@pytest.fixture(scope="module")
def saliency(badnets_digits):
  """Grad-CAM of 100 test images with and without the patch."""
  trained = badnets_digits.trained
  clean, triggered = badnets_digits.triggered_test()
  return gc.trigger_saliency(trained.model, trained.variables, clean[:100],
                             triggered[:100], badnets_digits.region)


def test_maps_have_the_input_shape_and_explain_the_prediction(
    badnets_digits, saliency):
  trained = badnets_digits.trained
  clean, _ = badnets_digits.triggered_test()
  assert gc.feature_map_layers(trained.model, trained.variables,
                               (8, 8, 1))[-1] == "BatchNorm_1"
  maps, classes = gc.grad_cam(trained.model, trained.variables, clean[:100])
  np.testing.assert_array_equal(maps, saliency.clean_maps)
  assert maps.shape == (100, 8, 8)
  assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
  np.testing.assert_array_equal(classes, trained.predict(clean[:100]))
  other, explained = gc.grad_cam(trained.model, trained.variables,
                                 clean[:100], layer="Conv_0",
                                 classes=np.full(100, 3), batch_size=50)
  assert other.shape == (100, 8, 8) and np.all(explained == 3)
  assert not np.allclose(other, maps)
  with pytest.raises(ValueError, match="BatchNorm_1"):
    gc.grad_cam(trained.model, trained.variables, clean, layer="Dense_0")
  with pytest.raises(ValueError, match=r"in \[0, 10\)"):
    gc.grad_cam(trained.model, trained.variables, clean[:2],
                classes=np.array([0, 10]))


def test_triggered_images_draw_saliency_to_the_patch(saliency):
  record = saliency.to_dict()
  assert record["layer"] == "BatchNorm_1"
  assert record["region_fraction"] == pytest.approx(9 / 64)
  # Measured: 36% of the saliency inside the patch when triggered, 12% on
  # the same images without it; more for 98% of the images.
  assert record["mean_triggered_share"] > 2 * record["mean_clean_share"]
  assert np.mean(saliency.triggered_share > saliency.clean_share) > 0.8


def test_grids_are_written(badnets_digits, saliency, tmp_path):
  pytest.importorskip("matplotlib")
  clean, triggered = badnets_digits.triggered_test()
  path = tmp_path / "grad_cam.png"
  gc.save_trigger_saliency_grid(str(path), triggered[:100], saliency)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="one title per image"):
    image_grids.save_image_grid(str(tmp_path / "x.png"), clean[:4], ["a"])
