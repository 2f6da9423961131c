"""Batched, keyed data augmentation in pure JAX.

Every function maps float images [B, H, W, C] and a ``jax.random`` key to
images of the same shape and dtype, draws one independent transformation per
example, is jit-able, and is differentiable in the images (the gradient is
the transpose of the sampled shift / flip / mask), so poisons crafted by
gradient alignment can differentiate through augmentation.

* :func:`random_shift`: random crop of the padded image (translation by at
  most ``pad`` pixels), the usual CIFAR augmentation.
* :func:`random_flip`: horizontal flip with probability 1/2.
* :func:`random_erasing`: Random Erasing (Zhong et al., 2020, Alg. 1): with
  probability p, one rectangle of area fraction s_e ~ U(scale) and aspect
  ratio r_e (log-uniform in ``ratio``) is replaced by ``value``; used by WILD
  to make a model robust to trigger-like occlusions.
* :class:`AugmentConfig`: the three composed, as a hashable config.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

PAD_MODES = {"zero": "constant", "reflect": "reflect"}
# Rectangles drawn per example for random erasing; the first one that fits is
# used (an unrolled version of the retry loop of Zhong et al., Alg. 1).
ERASING_ATTEMPTS = 10


def _check_images(images: jax.Array) -> None:
  if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(
        f"augmentation needs float images [B, H, W, C], got dtype "
        f"{images.dtype} and shape {images.shape}; convert uint8 images with "
        "Dataset.float_images() first.")


def _check_probability(probability: float) -> None:
  if not 0.0 <= probability <= 1.0:
    raise ValueError(f"probability {probability} is not in [0, 1].")


def _check_range(name: str, bounds: tuple[float, float], upper: float) -> None:
  low, high = bounds
  if not 0.0 < low <= high <= upper:
    raise ValueError(
        f"{name}={bounds} is not an interval (low, high) with "
        f"0 < low <= high <= {upper}.")


def random_shift(images: jax.Array, key: jax.Array, pad: int,
                 mode: str = "zero") -> jax.Array:
  """Random crop with padding: shifts each image by up to ``pad`` pixels.

  Pads H and W by ``pad`` on each side and crops an H x W window at an offset
  drawn uniformly from {0, ..., 2 pad}^2, independently per example; output
  pixel (i, j) is padded pixel (i + dy, j + dx).

  Args:
    images: float [B, H, W, C].
    key: a ``jax.random`` key.
    pad: maximum shift in pixels, a static int >= 0 (4 for CIFAR-10).
    mode: "zero" (pad with zeros) or "reflect" (mirror the border, which
      needs ``pad`` < H and W).

  Returns:
    float [B, H, W, C], same dtype as ``images``.
  """
  _check_images(images)
  if not isinstance(pad, int) or pad < 0:
    raise ValueError(f"pad={pad!r} must be a Python int >= 0.")
  if mode not in PAD_MODES:
    raise ValueError(f"pad mode {mode!r} is unknown; use one of "
                     f"{sorted(PAD_MODES)}.")
  batch, height, width, channels = images.shape
  if mode == "reflect" and pad >= min(height, width):
    raise ValueError(f"reflect padding needs pad < {min(height, width)} for "
                     f"{height}x{width} images, got pad={pad}.")
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                   mode=PAD_MODES[mode])
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * pad + 1)

  def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (height, width, channels))

  return jax.vmap(crop)(padded, offsets)


def random_flip(images: jax.Array, key: jax.Array) -> jax.Array:
  """Flips each image left-right with probability 1/2.

  Args:
    images: float [B, H, W, C].
    key: a ``jax.random`` key.

  Returns:
    float [B, H, W, C], same dtype as ``images``.
  """
  _check_images(images)
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def _erasing_boxes(uniform: jax.Array, height: int, width: int,
                   scale: tuple[float, float], ratio: tuple[float, float]
                   ) -> jax.Array:
  """One rectangle per example (Zhong et al., Alg. 1, lines 5-14).

  Args:
    uniform: U[0, 1) draws [B, 2 * ERASING_ATTEMPTS + 2].

  Returns:
    int32 [B, 4]: (top, left, h, w); h = w = 0 when none of the
    ERASING_ATTEMPTS candidates fits inside the image.
  """
  area_u, ratio_u = jnp.split(uniform[:, :-2], 2, axis=1)
  area = height * width * (scale[0] + (scale[1] - scale[0]) * area_u)
  log_ratio = (math.log(ratio[0]) +
               (math.log(ratio[1]) - math.log(ratio[0])) * ratio_u)
  h = jnp.round(jnp.sqrt(area * jnp.exp(log_ratio))).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(area * jnp.exp(-log_ratio))).astype(jnp.int32)
  fits = (h < height) & (w < width)
  first = jnp.argmax(fits, axis=1)[:, None]
  found = fits.any(axis=1)
  h = jnp.where(found, jnp.take_along_axis(h, first, 1)[:, 0], 0)
  w = jnp.where(found, jnp.take_along_axis(w, first, 1)[:, 0], 0)
  # top ~ U{0, ..., height - h}, left ~ U{0, ..., width - w}; the minimum
  # guards against u * n rounding up to n in float32.
  top = jnp.minimum(jnp.floor(uniform[:, -2] * (height - h + 1)), height - h)
  left = jnp.minimum(jnp.floor(uniform[:, -1] * (width - w + 1)), width - w)
  top, left = top.astype(jnp.int32), left.astype(jnp.int32)
  return jnp.stack([top, left, h, w], axis=1)


def check_random_erasing(probability: float, scale: tuple[float, float],
                         ratio: tuple[float, float],
                         value: float | str) -> None:
  """Raises ValueError unless :func:`random_erasing` accepts these settings
  (for settings objects that check them before any work)."""
  _check_probability(probability)
  _check_range("scale", scale, 1.0)
  _check_range("ratio", ratio, math.inf)
  if isinstance(value, str) and value != "random":
    raise ValueError(f"value={value!r}; use a number or 'random'.")


def random_erasing(images: jax.Array, key: jax.Array, probability: float,
                   scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3),
                   value: float | str = 0.0) -> jax.Array:
  """Random Erasing (Zhong et al., 2020, Alg. 1), one rectangle per image.

  With probability ``probability`` an image gets a rectangle of area
  s_e * H * W, s_e ~ U(scale), and aspect ratio h / w = r_e with
  log r_e ~ U(log ratio), sides rounded to whole pixels, placed uniformly
  inside the image; its pixels (all channels) are replaced by ``value``.
  A candidate fits when h < H and w < W; if none of ERASING_ATTEMPTS
  candidates fits, the image is left unchanged.

  Args:
    images: float [B, H, W, C].
    key: a ``jax.random`` key.
    probability: p in [0, 1] (a Python float), the chance that an image is
      erased.
    scale: (s_l, s_h), bounds of the erased area fraction, 0 < s_l <= s_h <= 1.
    ratio: (r_1, r_2), bounds of the aspect ratio, 0 < r_1 <= r_2.
    value: a constant fill, or "random" for i.i.d. U[0, 1] pixels.

  Returns:
    float [B, H, W, C], same dtype as ``images``.
  """
  _check_images(images)
  check_random_erasing(probability, scale, ratio, value)
  batch, height, width, _ = images.shape
  draw_key, fill_key = jax.random.split(key)
  # Column 0 decides whether to erase, the others draw the rectangle.
  uniform = jax.random.uniform(draw_key, (batch, 2 * ERASING_ATTEMPTS + 3))
  top, left, h, w = (b[:, None, None] for b in _erasing_boxes(
      uniform[:, 1:], height, width, scale, ratio).T)
  rows = jnp.arange(height)[:, None]
  cols = jnp.arange(width)[None, :]
  inside = ((rows >= top) & (rows < top + h) &
            (cols >= left) & (cols < left + w))
  mask = (inside & (uniform[:, :1, None] < probability))[..., None]
  if isinstance(value, str):
    fill = jax.random.uniform(fill_key, images.shape, images.dtype)
  else:
    fill = jnp.asarray(value, images.dtype)
  return jnp.where(mask, fill, images)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Shift, then flip, then random erasing; each off by default.

  Frozen and hashable, so it can be a static argument of a jitted step.

  Attributes:
    shift: maximum translation in pixels (0 = off); see :func:`random_shift`.
    shift_mode: "zero" or "reflect" padding for the shift.
    flip: random horizontal flips.
    erasing: probability of random erasing (0 = off).
    erasing_scale: area-fraction bounds of the erased rectangle.
    erasing_ratio: aspect-ratio bounds of the erased rectangle.
    erasing_value: a constant fill, or "random".
  """

  shift: int = 0
  shift_mode: str = "zero"
  flip: bool = False
  erasing: float = 0.0
  erasing_scale: tuple[float, float] = (0.02, 0.33)
  erasing_ratio: tuple[float, float] = (0.3, 3.3)
  erasing_value: float | str = 0.0

  def __post_init__(self):
    # Configs may hold lists; tuples keep the dataclass hashable.
    object.__setattr__(self, "erasing_scale", tuple(self.erasing_scale))
    object.__setattr__(self, "erasing_ratio", tuple(self.erasing_ratio))

  def apply(self, images: jax.Array, key: jax.Array) -> jax.Array:
    """float [B, H, W, C] -> augmented float [B, H, W, C].

    Each stage draws from its own ``fold_in`` of ``key``, so turning one
    stage on or off leaves the others' draws unchanged.
    """
    if self.shift:
      images = random_shift(images, jax.random.fold_in(key, 0), self.shift,
                            self.shift_mode)
    if self.flip:
      images = random_flip(images, jax.random.fold_in(key, 1))
    if self.erasing:
      images = random_erasing(images, jax.random.fold_in(key, 2), self.erasing,
                              self.erasing_scale, self.erasing_ratio,
                              self.erasing_value)
    return images
