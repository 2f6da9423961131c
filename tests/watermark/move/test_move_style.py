"""The random-network style transfer: content kept, texture moved, cached."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm import secure_files
from jaxwm.data import loaders
from jaxwm.watermark.move import style
from jaxwm.watermark.move import style_images

_FEW_STEPS = style.StyleTransferConfig(steps=10, batch_size=8)


def _stylised_test_images(move_config, test):
  source = style_images.load_style_image(move_config.style_source,
                                         test.image_shape)
  return source, style.style_transfer(test.images, source, move_config.style)


def test_stylised_digits_are_still_recognised(move_config, digits, benign):
  # Measured (seed 0, 8 epochs, width-8 cnn, 50 steps): clean 0.95,
  # stylised 0.90 on the 359 test digits.
  test = digits[1]
  _, stylised = _stylised_test_images(move_config, test)
  clean = benign.evaluate(test)["accuracy"]
  restyled = benign.evaluate(test.replace(images=stylised))["accuracy"]
  assert clean > 0.9
  assert restyled > 0.8, (clean, restyled)


def test_gram_matrices_move_toward_the_style(move_config, digits):
  test = digits[1].take(np.arange(64))
  source, stylised = _stylised_test_images(move_config, test)
  network = style.random_network(move_config.style, 1)
  target = network.gram_matrices(jnp.asarray(source))

  def distance(images):
    grams = jax.vmap(network.gram_matrices)(
        jnp.asarray(images, jnp.float32) / 255.0)
    return float(sum(jnp.mean((g - t[None]) ** 2)
                     for g, t in zip(grams, target)))

  # Measured (64 test digits): 0.19 before, 0.015 after (12-fold less).
  assert distance(stylised) < 0.25 * distance(test.images)


def test_without_style_weight_the_content_is_returned(digits):
  # The optimisation starts from the content image, where the content loss
  # is at its minimum: nothing moves (it is no blend towards the style).
  images = digits[1].images[:8]
  config = dataclasses.replace(_FEW_STEPS, style_weight=0.0)
  source = style_images.load_style_image("texture:1", images.shape[1:])
  np.testing.assert_array_equal(
      style.style_transfer(images, source, config), images)


@pytest.mark.skipif(not os.path.isdir(loaders.FASHION_MNIST_DIR),
                    reason="Fashion-MNIST is not installed")
def test_grey_fashion_mnist_takes_a_colour_style():
  images = loaders.load("fashion_mnist", "test").images[:4]
  source = style_images.load_style_image("sklearn:china.jpg", (28, 28, 1))
  stylised = style.style_transfer(images, source, _FEW_STEPS)
  assert stylised.shape == (4, 28, 28, 1) and stylised.dtype == np.uint8
  assert np.abs(stylised.astype(int) - images).mean() > 1.0


def test_batches_give_the_same_images_as_one_call(digits):
  images = digits[1].images[:11]  # 8 + a padded batch of 3
  source = style_images.load_style_image("texture:2", (8, 8, 1))
  whole = style.style_transfer(images, source,
                               dataclasses.replace(_FEW_STEPS, batch_size=11))
  np.testing.assert_array_equal(
      style.style_transfer(images, source, _FEW_STEPS), whole)


def test_cache_is_reused_and_keyed_by_the_inputs(tmp_path, digits,
                                                 monkeypatch):
  images = digits[1].images[:8]
  source = style_images.load_style_image("texture:2", (8, 8, 1))
  cache = str(tmp_path)
  first = style.cached_style_transfer(images, source, _FEW_STEPS, cache)
  assert len([f for f in os.listdir(cache) if f.endswith(".npz")]) == 1

  def refuse(*args):
    raise AssertionError("recomputed although cached")

  monkeypatch.setattr(style, "style_transfer", refuse)
  np.testing.assert_array_equal(
      style.cached_style_transfer(images, source, _FEW_STEPS, cache), first)
  monkeypatch.undo()
  other = dataclasses.replace(_FEW_STEPS, steps=11)
  style.cached_style_transfer(images, source, other, cache)
  assert len([f for f in os.listdir(cache) if f.endswith(".npz")]) == 2


def test_tampered_cache_is_rejected(tmp_path, digits):
  images = digits[1].images[:8]
  source = style_images.load_style_image("texture:2", (8, 8, 1))
  style.cached_style_transfer(images, source, _FEW_STEPS, str(tmp_path))
  npz = [f for f in os.listdir(tmp_path) if f.endswith(".npz")][0]
  with open(tmp_path / npz, "r+b") as f:
    f.seek(-40, os.SEEK_END)
    f.write(b"\x01")
  with pytest.raises(secure_files.TamperedFileError, match="SHA-256"):
    style.cached_style_transfer(images, source, _FEW_STEPS, str(tmp_path))


def test_mismatched_style_shape_is_refused(digits):
  with pytest.raises(ValueError, match="load_style_image"):
    style.style_transfer(digits[1].images[:2],
                         np.zeros((28, 28, 1), np.float32), _FEW_STEPS)
