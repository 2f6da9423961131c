"""Tests of the BadNets, Blended and WaNet generators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.poison import triggers

CHECKER = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)


def _random_images(shape, seed=0):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_badnets_default_is_3x3_checkerboard_bottom_right_at_32x32():
  trigger = triggers.badnets_trigger((32, 32, 3))
  out = np.array(trigger(np.zeros((2, 32, 32, 3), np.float32)))
  for channel in range(3):
    np.testing.assert_array_equal(out[1, 29:, 29:, channel], CHECKER)
  out[:, 29:, 29:] = 0
  assert not out.any()
  assert trigger.params == {"size": [3, 3], "position": [29, 29],
                            "pattern": "checkerboard"}


@pytest.mark.parametrize("shape,size", [((28, 28, 1), 3), ((64, 64, 3), 6),
                                        ((8, 8, 1), 1), ((16, 16, 1), 2)])
def test_badnets_patch_scales_with_image_size(shape, size):
  trigger = triggers.badnets_trigger(shape)
  assert int(trigger.alpha.sum()) == size * size * shape[2]
  assert trigger.alpha[-size:, -size:].all()
  if size == 6:
    np.testing.assert_array_equal(trigger.pattern[-6:, -6:, 0],
                                  np.kron(CHECKER, np.ones((2, 2))))


def test_badnets_leaves_other_pixels_bit_identical():
  images = _random_images((4, 28, 28, 1))
  out = np.asarray(triggers.badnets_trigger((28, 28, 1))(images))
  np.testing.assert_array_equal(out[:, :25], images[:, :25])
  np.testing.assert_array_equal(out[:, :, :25], images[:, :, :25])


def test_badnets_custom_position_and_pattern():
  pattern = np.array([[0.5, 0.25]], np.float32)
  trigger = triggers.badnets_trigger((6, 6, 2), position=(1, 2),
                                     pattern=pattern)
  out = np.asarray(trigger(np.ones((1, 6, 6, 2), np.float32)))
  expected = np.ones((6, 6, 2), np.float32)
  expected[1, 2:4] = pattern[0][:, None]
  np.testing.assert_array_equal(out[0], expected)
  white = triggers.badnets_trigger((6, 6, 1), size=2, position=(0, 0),
                                   pattern="white")
  np.testing.assert_array_equal(white.pattern[:2, :2, 0], np.ones((2, 2)))


@pytest.mark.parametrize("kwargs", [
    {"position": (30, 0)}, {"position": (-1, 0)}, {"pattern": "stripes"},
    {"pattern": np.full((2, 2), 2.0)}, {"size": 0}])
def test_badnets_rejects_bad_settings(kwargs):
  with pytest.raises(ValueError):
    triggers.badnets_trigger((32, 32, 3), **kwargs)


def test_blended_follows_its_formula_with_a_seeded_pattern():
  key = jax.random.key(3)
  trigger = triggers.blended_trigger(key, (8, 8, 3))
  images = _random_images((2, 8, 8, 3))
  np.testing.assert_allclose(trigger(images),
                             0.9 * images + 0.1 * trigger.pattern, atol=1e-6)
  np.testing.assert_array_equal(
      trigger.pattern, triggers.blended_trigger(key, (8, 8, 3)).pattern)
  other = triggers.blended_trigger(jax.random.key(4), (8, 8, 3))
  assert not np.array_equal(trigger.pattern, other.pattern)
  levels = trigger.pattern * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  with pytest.raises(ValueError, match="alpha"):
    triggers.blended_trigger(key, (8, 8, 3), alpha=1.5)


def _identity_grid(height, width):
  return np.stack(np.meshgrid(np.linspace(-1, 1, width),
                              np.linspace(-1, 1, height)),
                  axis=-1).astype(np.float32)


def test_warp_with_the_identity_grid_returns_the_images():
  images = _random_images((3, 7, 5, 2))
  np.testing.assert_allclose(triggers.warp(images, _identity_grid(7, 5)),
                             images, atol=1e-6)


def test_warp_interpolates_bilinearly_with_zero_padding():
  # One row 0, 10, 20, 30 (W = 4); x = -1 + 2 * pixel / 3.
  images = np.array([0.0, 10.0, 20.0, 30.0], np.float32).reshape(1, 1, 4, 1)
  pixels = np.array([1.0, 0.5, 2.25, -0.75, 3.5])
  grid = np.stack([-1 + 2 * pixels / 3, np.zeros(5)], -1)
  out = triggers.warp(images, grid.reshape(1, 5, 2).astype(np.float32))
  np.testing.assert_allclose(np.asarray(out).ravel(),
                             [10.0, 5.0, 22.5, 0.0, 15.0], atol=1e-5)


def test_warp_accepts_one_grid_per_image_and_jit():
  images = _random_images((2, 6, 6, 1))
  grids = np.stack([_identity_grid(6, 6), _identity_grid(6, 6)[:, ::-1]])
  out = jax.jit(triggers.warp)(images, grids)
  np.testing.assert_allclose(out[0], images[0], atol=1e-6)
  np.testing.assert_allclose(out[1], images[1][:, ::-1], atol=1e-6)


def test_bicubic_upsampling_matches_hand_worked_weights():
  # size 4 -> 7 with aligned corners: output i samples input 0.5 * i.
  matrix = triggers._cubic_upsample_matrix(4, 7)
  np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
  np.testing.assert_allclose(matrix[2], [0, 1, 0, 0])
  np.testing.assert_allclose(matrix[3], [-0.09375, 0.59375, 0.59375, -0.09375])
  np.testing.assert_allclose(matrix[1], [0.5, 0.59375, -0.09375, 0.0])


def test_wanet_field_is_a_small_seeded_warp():
  key = jax.random.key(0)
  trigger = triggers.wanet_trigger(key, (28, 28, 1))
  assert trigger.params == {"k": 4, "s": 0.5}
  np.testing.assert_array_equal(
      trigger.grid, triggers.wanet_trigger(key, (28, 28, 1)).grid)
  assert not np.array_equal(
      trigger.grid, triggers.wanet_trigger(jax.random.key(1), (28, 28)).grid)
  shift = (trigger.grid - _identity_grid(28, 28)) * 27 / 2  # in pixels
  assert np.abs(trigger.grid).max() <= 1
  # Offsets of mean magnitude 1 scaled by s / size: about a quarter pixel.
  assert 0.05 < np.abs(shift).mean() < 1.0
  images = _random_images((2, 28, 28, 1))
  assert np.abs(np.asarray(trigger(images)) - images).mean() > 1e-3
  with pytest.raises(ValueError, match="k must be"):
    triggers.wanet_trigger(key, (8, 8, 1), k=9)


def test_wanet_noise_mode_draws_a_field_per_image():
  trigger = triggers.wanet_trigger(jax.random.key(0), (16, 16, 1))
  grids = np.asarray(triggers.noisy_grid(jax.random.key(1), trigger.grid, 2))
  assert np.abs(grids - trigger.grid).max() <= 1 / 16 + 1e-6
  assert np.abs(grids).max() <= 1
  images = np.repeat(_random_images((1, 16, 16, 1)), 2, axis=0)
  out = np.asarray(trigger.with_noise(images, jax.random.key(1)))
  assert not np.allclose(out[0], out[1])


def test_apply_uint8_rounds_to_stored_levels():
  images = np.array([10, 200], np.uint8).reshape(2, 1, 1, 1)
  out = triggers.apply_uint8(lambda x: x * 0.5 + 0.001, images)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out.ravel(), [5, 100])
  with pytest.raises(TypeError, match="uint8"):
    triggers.apply_uint8(lambda x: x, images.astype(np.float32))


@pytest.mark.parametrize("make", [
    lambda: triggers.badnets_trigger((8, 8, 3)),
    lambda: triggers.wanet_trigger(jax.random.key(0), (8, 8, 3))])
def test_trigger_records_rebuild_the_same_trigger(make):
  trigger = make()
  arrays, metadata = triggers.trigger_to_record(trigger)
  rebuilt = triggers.trigger_from_record(arrays, metadata)
  assert type(rebuilt) is type(trigger) and rebuilt.params == trigger.params
  images = _random_images((2, 8, 8, 3))
  np.testing.assert_array_equal(rebuilt(images), trigger(images))
  with pytest.raises(ValueError, match="unknown trigger kind"):
    triggers.trigger_from_record(arrays, {**metadata, "kind": "noise"})


def test_triggers_reject_arrays_out_of_range():
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    triggers.BlendTrigger("x", np.full((2, 2, 1), 2.0), np.ones((2, 2, 1)))
  with pytest.raises(ValueError, match=r"\[-1, 1\]"):
    triggers.WarpTrigger("wanet", np.full((2, 2, 2), 1.5))
  with pytest.raises(ValueError, match="rebuild it"):
    triggers.check_trigger_fits(triggers.badnets_trigger((8, 8, 1)),
                                (9, 8, 1))
  assert jnp.allclose(triggers.to_uint8(jnp.array([1.2, -0.1])),
                      jnp.array([255, 0]))


def test_stamp_patch_at_moves_the_patch_of_each_image():
  trigger = triggers.badnets_trigger((8, 8, 1), size=3)
  images = (np.arange(3 * 64, dtype=np.int64).reshape(3, 8, 8, 1) % 251
            ).astype(np.uint8)
  positions = np.array([[0, 0], [5, 5], [2, 4]])
  out = triggers.stamp_patch_at(trigger, images, positions)
  for image, stamped, position in zip(images, out, positions):
    # Each image equals the patch stamped at its own position, and nothing
    # outside that patch moved.
    moved = triggers.badnets_trigger((8, 8, 1), size=3,
                                     position=tuple(position))
    np.testing.assert_array_equal(
        stamped, triggers.apply_uint8(moved, image[None])[0])
    outside = moved.alpha == 0
    np.testing.assert_array_equal(stamped[outside], image[outside])
  np.testing.assert_array_equal(
      triggers.stamp_patch_at(trigger, images, [[5, 5]] * 3),
      triggers.apply_uint8(trigger, images))


def test_stamp_patch_at_rejects_positions_outside_the_image():
  trigger = triggers.badnets_trigger((8, 8, 1), size=3)
  images = np.zeros((2, 8, 8, 1), np.uint8)
  with pytest.raises(ValueError, match=r"rows in \[0, 5\]"):
    triggers.stamp_patch_at(trigger, images, [[0, 0], [6, 0]])
  with pytest.raises(ValueError, match="2 images"):
    triggers.stamp_patch_at(trigger, images, [[0, 0]])
  with pytest.raises(ValueError, match="BadNets"):
    triggers.stamp_patch_at(
        triggers.blended_trigger(jax.random.key(0), (8, 8, 1)), images,
        [[0, 0], [1, 1]])
