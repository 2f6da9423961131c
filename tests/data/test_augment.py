"""Tests of the pure-JAX augmentations."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.data import augment



def _key(seed):
  # "unsafe_rbg" keys compile several times faster than threefry on CPU;
  # test_jit_matches_eager uses the default implementation.
  return jax.random.key(seed, impl="unsafe_rbg")


KEY = _key(0)
FULL = augment.AugmentConfig(shift=2, flip=True, erasing=0.5)


def _jitted(fn, **kwargs):
  """``fn(images, key, **kwargs)`` compiled once (eager dispatch is slow)."""
  return jax.jit(functools.partial(fn, **kwargs))


def _random_images(shape=(16, 8, 8, 3), dtype=jnp.float32):
  rng = np.random.default_rng(42)
  return jnp.asarray(rng.uniform(size=shape), dtype)


AUGMENTATIONS = {
    "shift_zero": _jitted(augment.random_shift, pad=2),
    "shift_reflect": _jitted(augment.random_shift, pad=2, mode="reflect"),
    "flip": _jitted(augment.random_flip),
    "erasing": _jitted(augment.random_erasing, probability=0.5),
    "erasing_random": _jitted(augment.random_erasing, probability=0.5,
                              value="random"),
    "config": jax.jit(FULL.apply),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_shape_dtype_determinism_and_key_dependence(name, dtype):
  fn = AUGMENTATIONS[name]
  images = _random_images(dtype=dtype)
  out = fn(images, KEY)
  assert out.shape == images.shape
  assert out.dtype == dtype
  np.testing.assert_array_equal(out, fn(images, KEY))
  assert not np.array_equal(out, fn(images, _key(1)))


def test_jit_matches_eager_with_the_default_key():
  images = _random_images()
  key = jax.random.key(0)
  np.testing.assert_allclose(AUGMENTATIONS["config"](images, key),
                             FULL.apply(images, key), rtol=1e-6, atol=1e-6)


def test_config_is_a_static_jit_argument_even_from_lists():
  config = augment.AugmentConfig(shift=1, erasing=1.0,
                                 erasing_scale=[0.1, 0.2])
  assert config == augment.AugmentConfig(shift=1, erasing=1.0,
                                         erasing_scale=(0.1, 0.2))
  step = jax.jit(lambda c, x, k: c.apply(x, k), static_argnums=0)
  images = _random_images()
  np.testing.assert_allclose(step(config, images, KEY),
                             config.apply(images, KEY), atol=1e-6)


def test_default_config_is_identity():
  images = _random_images()
  np.testing.assert_array_equal(
      augment.AugmentConfig().apply(images, KEY), images)


def test_flip_leaves_mirror_symmetric_images_unchanged():
  images = _random_images()
  symmetric = images + images[:, :, ::-1]
  np.testing.assert_array_equal(AUGMENTATIONS["flip"](symmetric, KEY),
                                symmetric)


def test_flip_mirrors_about_half_of_the_batch():
  images = _random_images((64, 4, 5, 1))
  out = AUGMENTATIONS["flip"](images, KEY)
  flipped = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(out == images, axis=(1, 2, 3))
  assert np.all(flipped ^ kept)
  assert 16 <= flipped.sum() <= 48


def _one_hot_centre(batch, size, channels=1):
  images = np.zeros((batch, size, size, channels), np.float32)
  images[:, size // 2, size // 2, :] = 1.0
  return jnp.asarray(images)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_shift_moves_a_pixel_by_at_most_pad_and_uses_every_offset(mode):
  pad, size = 2, 9
  shift = _jitted(augment.random_shift, pad=pad, mode=mode)
  out = np.asarray(shift(_one_hot_centre(256, size), KEY))
  # A centred pixel never leaves the image, so it survives exactly once.
  assert np.all(out.sum(axis=(1, 2, 3)) == 1)
  _, rows, cols, _ = np.nonzero(out)
  moves = set(zip(rows - size // 2, cols - size // 2))
  assert moves == set(itertools.product(range(-pad, pad + 1), repeat=2))


def test_shift_is_a_crop_of_the_zero_padded_image():
  images = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1) + 1
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  crops = [padded[:, i:i + 3, j:j + 3] for i in range(3) for j in range(3)]
  shift = _jitted(augment.random_shift, pad=1)
  for seed in range(5):
    out = np.asarray(shift(jnp.asarray(images), _key(seed)))
    for b in range(2):
      assert any(np.array_equal(out[b], crop[b]) for crop in crops)


def test_reflect_shift_keeps_constant_images_constant():
  images = jnp.full((8, 6, 6, 2), 0.7)
  shift = _jitted(augment.random_shift, pad=3, mode="reflect")
  np.testing.assert_array_equal(shift(images, KEY), images)


def _erased_boxes(out):
  """(h, w) of the zero rectangle in each of ones-images ``out``."""
  erased = np.asarray(out) == 0
  # Every channel is erased alike.
  assert np.all(erased == erased[..., :1])
  boxes = []
  for mask in erased[..., 0]:
    h, w = mask.any(axis=1).sum(), mask.any(axis=0).sum()
    assert mask.sum() == h * w  # a filled rectangle
    boxes.append((h, w))
  return np.array(boxes)


@pytest.mark.parametrize("scale, ratio", [((0.02, 0.33), (0.3, 3.3)),
                                          ((0.1, 0.15), (0.5, 2.0))])
def test_erased_rectangles_respect_scale_and_ratio(scale, ratio):
  size = 32
  images = jnp.ones((128, size, size, 3))
  erase = _jitted(augment.random_erasing, probability=1.0, scale=scale,
                  ratio=ratio)
  out = erase(images, KEY)
  h, w = _erased_boxes(out).T.astype(float)
  assert np.all(h > 0) and np.all(h < size) and np.all(w < size)
  # h = round(sqrt(S r)) and w = round(sqrt(S / r)) for some area S in
  # scale * H * W and r in ratio: undo the rounding by +-0.5 pixel.
  area = size * size
  assert np.all((h - 0.5) * (w - 0.5) <= scale[1] * area)
  assert np.all((h + 0.5) * (w + 0.5) >= scale[0] * area)
  assert np.all((h - 0.5) / (w + 0.5) <= ratio[1])
  assert np.all((h + 0.5) / (w - 0.5) >= ratio[0])
  # The areas spread over the range rather than sitting at one end.
  fractions = h * w / area
  assert fractions.min() < scale[0] + 0.3 * (scale[1] - scale[0])
  assert fractions.max() > scale[1] - 0.3 * (scale[1] - scale[0])


def test_erasing_probability_controls_how_many_images_are_erased():
  images = jnp.ones((256, 8, 8, 1))
  erase = _jitted(augment.random_erasing, probability=0.5, scale=(0.1, 0.2))
  erased = np.any(np.asarray(erase(images, KEY)) == 0, axis=(1, 2, 3))
  assert 96 <= erased.sum() <= 160
  never = _jitted(augment.random_erasing, probability=0.0)
  np.testing.assert_array_equal(never(images, KEY), images)


def test_erasing_with_random_value_fills_uniform_noise():
  images = jnp.full((64, 16, 16, 3), 2.0)
  erase = _jitted(augment.random_erasing, probability=1.0, value="random")
  out = np.asarray(erase(images, KEY))
  noise = out[out != 2.0]
  assert noise.size > 64 * 16 * 16 * 3 * 0.02
  assert noise.min() >= 0 and noise.max() < 1 and noise.std() > 0.2


def _jacobian(fn, shape):
  """d fn(x)[b] / d x[b] per example, built from forward passes only.

  Returns float [B, H*W*C (outputs), H*W*C (inputs)].
  """
  batch, size = shape[0], int(np.prod(shape[1:]))
  basis = jnp.eye(size).reshape(size, 1, *shape[1:])
  columns = jax.jit(jax.vmap(lambda e: fn(jnp.broadcast_to(e, shape))))(basis)
  return np.asarray(columns).reshape(size, batch, size).transpose(1, 2, 0)


def test_gradient_is_the_transposed_shift_flip_erasing_mask():
  config = augment.AugmentConfig(shift=2, flip=True, erasing=0.7)
  shape = (6, 8, 8, 2)
  x = _random_images(shape)
  w = np.random.default_rng(7).normal(size=shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(config.apply(x, KEY) * w)))(x)

  jacobian = _jacobian(lambda x: config.apply(x, KEY), shape)
  # Each output pixel copies at most one input pixel and vice versa.
  assert set(np.unique(jacobian)) <= {0.0, 1.0}
  assert jacobian.sum(axis=1).max() <= 1 and jacobian.sum(axis=2).max() <= 1
  # Erasing removes some pixels, shifting pushes some out.
  assert jacobian.sum() < jacobian.shape[0] * jacobian.shape[1]
  expected = np.einsum("boi,bo->bi", jacobian,
                       np.asarray(w).reshape(shape[0], -1))
  np.testing.assert_allclose(np.asarray(grad).reshape(shape[0], -1), expected,
                             atol=1e-6)


def test_gradient_is_finite_with_reflect_padding_and_random_fill():
  config = augment.AugmentConfig(shift=3, shift_mode="reflect", flip=True,
                                 erasing=1.0, erasing_value="random")
  x = _random_images()
  grad = jax.jit(jax.grad(lambda x: jnp.sum(config.apply(x, KEY) ** 2)))(x)
  assert bool(jnp.isfinite(grad).all())
  assert float(jnp.abs(grad).sum()) > 0


@pytest.mark.parametrize("call, message", [
    (lambda: augment.random_flip(jnp.zeros((8, 8, 1)), KEY), "shape"),
    (lambda: augment.random_flip(jnp.zeros((2, 8, 8, 1), jnp.uint8), KEY),
     "float_images"),
    (lambda: augment.random_shift(jnp.zeros((2, 8, 8, 1)), KEY, -1), "pad"),
    (lambda: augment.random_shift(jnp.zeros((2, 8, 8, 1)), KEY, 1, "edge"),
     "edge"),
    (lambda: augment.random_shift(jnp.zeros((2, 8, 8, 1)), KEY, 8, "reflect"),
     "pad < 8"),
    (lambda: augment.random_erasing(jnp.zeros((2, 8, 8, 1)), KEY, 1.5),
     "1.5"),
    (lambda: augment.random_erasing(jnp.zeros((2, 8, 8, 1)), KEY, 0.5,
                                    scale=(0.5, 0.1)), "scale"),
    (lambda: augment.random_erasing(jnp.zeros((2, 8, 8, 1)), KEY, 0.5,
                                    ratio=(0.0, 2.0)), "ratio"),
    (lambda: augment.random_erasing(jnp.zeros((2, 8, 8, 1)), KEY, 0.5,
                                    value="noise"), "noise"),
])
def test_bad_arguments_raise_errors_naming_the_value(call, message):
  with pytest.raises(ValueError, match=message):
    call()
