"""Style images from scikit-learn, matplotlib, a user's file or a texture."""

import re

import numpy as np
import pytest
from PIL import Image

from jaxwm.watermark.move import style_images


def test_sklearn_image_is_brought_to_the_content_shape():
  rgb = style_images.load_style_image("sklearn:flower.jpg", (32, 32, 3))
  grey = style_images.load_style_image("sklearn:flower.jpg", (32, 32, 1))
  assert rgb.shape == (32, 32, 3) and grey.shape == (32, 32, 1)
  assert rgb.dtype == grey.dtype == np.float32
  assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and rgb.std() > 0.05
  np.testing.assert_allclose(grey[..., 0], rgb @ [0.299, 0.587, 0.114],
                             atol=1e-5)


def test_matplotlib_sample_texture_loads():
  pytest.importorskip("matplotlib")
  image = style_images.load_style_image(
      "matplotlib:Minduka_Present_Blue_Pack.png", (28, 28, 1))
  assert image.shape == (28, 28, 1) and image.std() > 0.05


def test_user_file_with_transparency_is_laid_over_white(tmp_path):
  pixels = np.zeros((10, 20, 4), np.uint8)  # fully transparent black
  pixels[:, 10:] = (0, 0, 255, 255)  # opaque blue right half
  path = str(tmp_path / "style.png")
  Image.fromarray(pixels).save(path)
  image = style_images.load_style_image(path, (10, 10, 3))
  # The centred 10x10 crop holds 5 transparent (white) and 5 blue columns.
  np.testing.assert_allclose(image[:, 1], 1.0, atol=1e-6)
  np.testing.assert_allclose(image[:, -2], np.tile([0.0, 0.0, 1.0], (10, 1)),
                             atol=1e-6)


def test_procedural_texture_is_seeded():
  first = style_images.load_style_image("texture:3", (16, 24, 3))
  again = style_images.load_style_image("texture:3", (16, 24, 3))
  other = style_images.load_style_image("texture:4", (16, 24, 3))
  assert first.shape == (16, 24, 3)
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).mean() > 0.05
  assert first.std() > 0.1  # a high-contrast pattern, not a flat image


@pytest.mark.parametrize("source, shape, error, words", [
    ("sklearn:lena.jpg", (8, 8, 1), ValueError, "china.jpg"),
    ("/no/such/style.png", (8, 8, 1), FileNotFoundError, "does not exist"),
    ("texture:abc", (8, 8, 1), ValueError, "integer seed"),
    ("texture:0", (8, 8, 2), ValueError, "1 (grey) or 3"),
    ("texture:0", (8, 8), ValueError, "(H, W, C)"),
])
def test_bad_sources_are_refused(source, shape, error, words):
  with pytest.raises(error, match=re.escape(words)):
    style_images.load_style_image(source, shape)
