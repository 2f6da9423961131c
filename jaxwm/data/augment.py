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


def _erasing_boxes(key: jax.Array, batch: int, height: int, width: int,
                   scale: tuple[float, float], ratio: tuple[float, float]
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Samples one rectangle per example (Zhong et al., Alg. 1, lines 5-14).

  Returns:
    (top [B], left [B], size [B, 2] = (h, w)) as int32; size (0, 0) when
    none of the ERASING_ATTEMPTS candidates fits inside the image.
  """
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  shape = (batch, ERASING_ATTEMPTS)
  area = height * width * jax.random.uniform(
      area_key, shape, minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(
      ratio_key, shape, minval=math.log(ratio[0]), maxval=math.log(ratio[1])))
  h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (h < height) & (w < width)
  first = jnp.argmax(fits, axis=1)
  found = fits.any(axis=1)
  h = jnp.where(found, jnp.take_along_axis(h, first[:, None], 1)[:, 0], 0)
  w = jnp.where(found, jnp.take_along_axis(w, first[:, None], 1)[:, 0], 0)
  # top ~ U{0, ..., height - h}, left ~ U{0, ..., width - w}.
  top = jax.random.randint(top_key, (batch,), 0, height - h + 1)
  left = jax.random.randint(left_key, (batch,), 0, width - w + 1)
  return top, left, jnp.stack([h, w], axis=1)


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
  _check_probability(probability)
  _check_range("scale", scale, 1.0)
  _check_range("ratio", ratio, math.inf)
  if isinstance(value, str) and value != "random":
    raise ValueError(f"value={value!r}; use a number or 'random'.")
  batch, height, width, _ = images.shape
  box_key, apply_key, fill_key = jax.random.split(key, 3)
  top, left, size = _erasing_boxes(box_key, batch, height, width, scale, ratio)
  apply = jax.random.bernoulli(apply_key, probability, (batch,))
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  inside = ((rows >= top[:, None, None]) &
            (rows < (top + size[:, 0])[:, None, None]) &
            (cols >= left[:, None, None]) &
            (cols < (left + size[:, 1])[:, None, None]))
  mask = (inside & apply[:, None, None])[..., None]
  if value == "random":
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
