"""Input-noise defences against availability poisons (Fowl et al., App. A.5).

Each factory returns an engine ``input_transform``: a function (images float
[B, H, W, C] in [0, 1], key) -> images of the same shape, applied inside the
compiled training step (``recipe.train_model(..., input_transform=...)``).
Table 5 trains on poisoned data with

* Gaussian smoothing of the inputs (radius r = 2): :func:`gaussian_smoothing`;
* random additive l_inf noise of the poison's magnitude:
  :func:`additive_noise`.

:func:`compose` chains them after the usual augmentation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxwm.train.step import InputTransform


def _check_kernel(radius: int, sigma: float) -> None:
  if radius < 1 or sigma <= 0:
    raise ValueError(f"radius={radius} must be >= 1 and sigma={sigma} > 0.")


def gaussian_blur(images: jax.Array, radius: int, sigma: float) -> jax.Array:
  """Separable Gaussian filter of side 2 radius + 1, per channel.

  Borders are padded by reflection, so a constant image stays constant.

  Args:
    images: float [B, H, W, C].
    radius: kernel half-width in pixels (>= 1; Fowl et al. use 2).
    sigma: standard deviation of the Gaussian in pixels (> 0).

  Returns:
    float [B, H, W, C], same dtype.
  """
  _check_kernel(radius, sigma)
  if radius >= min(images.shape[1:3]):
    raise ValueError(f"radius={radius} must be smaller than the image "
                     f"({images.shape[1]}x{images.shape[2]}).")
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  weights = (weights / jnp.sum(weights)).astype(images.dtype)
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius),
                            (0, 0)), mode="reflect")
  size = 2 * radius + 1
  height, width = images.shape[1:3]
  rows = sum(weights[i] * padded[:, i:i + height] for i in range(size))
  return sum(weights[j] * rows[:, :, j:j + width] for j in range(size))


def gaussian_smoothing(radius: int = 2, sigma: float = 1.0) -> InputTransform:
  """The Gaussian-smoothing defence (Table 5) as an input transform."""
  _check_kernel(radius, sigma)

  def transform(images: jax.Array, key: jax.Array) -> jax.Array:
    del key
    return gaussian_blur(images, radius, sigma)

  return transform


def additive_noise(epsilon: float) -> InputTransform:
  """Random l_inf noise: x + U[-epsilon, epsilon] per pixel, clipped to [0, 1].

  A fresh draw for every image and step (Table 5, "random l_inf noise" of
  the poison's magnitude).
  """
  if not 0.0 < epsilon <= 1.0:
    raise ValueError(f"epsilon={epsilon} must be in (0, 1] (pixel units).")

  def transform(images: jax.Array, key: jax.Array) -> jax.Array:
    noise = jax.random.uniform(key, images.shape, images.dtype, -epsilon,
                               epsilon)
    return jnp.clip(images + noise, 0.0, 1.0)

  return transform


def compose(*transforms: InputTransform) -> InputTransform:
  """Applies ``transforms`` in order, transform i keyed by ``fold_in(key, i)``."""

  def transform(images: jax.Array, key: jax.Array) -> jax.Array:
    for index, each in enumerate(transforms):
      images = each(images, jax.random.fold_in(key, index))
    return images

  return transform
