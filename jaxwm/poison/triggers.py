"""Poisoned-image generators G of backdoor dataset watermarks.

The UBW paper (Section 3.1) writes every poison-only backdoor as a generator
``G: X -> X`` applied to the selected images. jaxwm implements the three
generators its baselines and UBW-P use (Section 5.1, Appendix C.1):

* BadNets: a small patch stamped onto the image, ``G(x) = (1 - m) x + m t``
  with a binary mask ``m`` (3x3 at 32x32, a white-black checkerboard in the
  bottom-right corner by default, Appendix C.1).
* Blended: ``G(x) = (1 - alpha) x + alpha t`` with ``alpha = 0.1`` and a
  seeded random pattern image ``t`` (Section 3.1).
* WaNet: ``G(x) = warp(x, grid)``, a smooth random warping field (``k = 4``
  control points per side, strength ``s = 0.5``) applied by bilinear
  resampling, plus its noise mode (a per-image random perturbation of the
  field, used on extra training images that keep their labels).

The functions :func:`blend` and :func:`warp` are pure, batched and jit-able,
on float images [B, H, W, C] in [0, 1]. The trigger dataclasses hold the
arrays that define one trigger, so a :class:`~jaxwm.poison.watermark_key.
WatermarkKey` can save them and rebuild the very same trigger later.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm import fields

ImageShape = tuple[int, int, int]

# The base BadNets pattern: a 3x3 white-black checkerboard (1 = white).
_CHECKERBOARD = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
# Torch-compatible bicubic kernel parameter (Keys' a) for the WaNet field.
_CUBIC_A = -0.75


@jax.jit
def blend(images: jax.Array, pattern: jax.Array,
          alpha: jax.Array) -> jax.Array:
  """``G(x) = (1 - alpha) * x + alpha * pattern`` (UBW paper, Section 3.1).

  With a binary ``alpha`` this stamps a BadNets patch: pixels where
  ``alpha == 1`` become the pattern, the others stay exactly as they were.

  Args:
    images: float [B, H, W, C] in [0, 1].
    pattern: float [H, W, C] (one trigger) or [B, H, W, C] (one per image).
    alpha: float in [0, 1], broadcastable to ``images`` (e.g. [H, W, C]).

  Returns:
    float [B, H, W, C] in [0, 1].
  """
  return (1.0 - alpha) * images + alpha * pattern


@jax.jit
def warp(images: jax.Array, grid: jax.Array) -> jax.Array:
  """Bilinear resampling of ``images`` at the normalised coordinates ``grid``.

  The WaNet generator (``grid_sample`` with ``align_corners=True`` and zero
  padding): ``grid[..., 0]`` is the horizontal coordinate x and
  ``grid[..., 1]`` the vertical coordinate y, both in [-1, 1], where -1 and 1
  are the centres of the first and last pixels. Sampling points outside the
  image read zeros.

  Args:
    images: float [B, H, W, C].
    grid: float [H', W', 2] (one field for all images) or [B, H', W', 2].

  Returns:
    float [B, H', W', C].
  """
  batch, height, width, _ = images.shape
  grid = jnp.broadcast_to(grid, (batch,) + grid.shape[-3:])
  x = (grid[..., 0] + 1.0) * 0.5 * (width - 1)
  y = (grid[..., 1] + 1.0) * 0.5 * (height - 1)
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  wx = (x - x0)[..., None]
  wy = (y - y0)[..., None]
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)

  def corner(yi, xi):
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    values = jax.vmap(lambda im, r, c: im[r, c])(
        images, jnp.clip(yi, 0, height - 1), jnp.clip(xi, 0, width - 1))
    return jnp.where(inside[..., None], values, 0.0)

  top = corner(y0, x0) * (1.0 - wx) + corner(y0, x0 + 1) * wx
  bottom = corner(y0 + 1, x0) * (1.0 - wx) + corner(y0 + 1, x0 + 1) * wx
  return top * (1.0 - wy) + bottom * wy


@functools.partial(jax.jit, static_argnames="batch")
def noisy_grid(key: jax.Array, grid: jax.Array, batch: int) -> jax.Array:
  """WaNet's noise mode: ``clip(grid + U(-1, 1) / size, -1, 1)`` per image.

  Args:
    key: jax.random key.
    grid: float [H, W, 2], the trigger's warping field.
    batch: B, the number of independent noisy fields.

  Returns:
    float [B, H, W, 2].
  """
  height, width = grid.shape[:2]
  noise = jax.random.uniform(key, (batch, height, width, 2), minval=-1.0,
                             maxval=1.0)
  scale = jnp.array([width, height], jnp.float32)
  return jnp.clip(grid + noise / scale, -1.0, 1.0)


def to_uint8(images: jax.Array) -> jax.Array:
  """Float [..] in [0, 1] -> uint8 0..255, rounded to the nearest level."""
  return jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def apply_uint8(generator: Callable[[jax.Array], jax.Array],
                images: np.ndarray) -> np.ndarray:
  """Applies a float generator to stored uint8 images and rounds back.

  This is how triggers enter a released dataset: on the stored images,
  before any augmentation (Appendix C.1), so the released files hold exactly
  what the model will see.

  Args:
    generator: float [B, H, W, C] in [0, 1] -> float [B, H, W, C].
    images: uint8 [B, H, W, C].

  Returns:
    uint8 numpy array [B, H, W, C].
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise TypeError(
        f"expected stored uint8 images, got dtype {images.dtype}; call the "
        "trigger itself on float images in [0, 1].")
  floats = jnp.asarray(images, jnp.float32) / 255.0
  return np.asarray(to_uint8(generator(floats)))


def _as_image_array(array: Any, image_shape: ImageShape,
                    what: str) -> np.ndarray:
  """[h, w] or [h, w, 1] or [h, w, C] in [0, 1] -> float32 [h, w, C]."""
  array = np.asarray(array, np.float32)
  channels = image_shape[2]
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[2] not in (1, channels):
    raise ValueError(
        f"{what} must have shape [h, w], [h, w, 1] or [h, w, {channels}], "
        f"got {array.shape}.")
  if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
    raise ValueError(
        f"{what} values must lie in [0, 1] (float images); divide uint8 "
        "patterns by 255.")
  return np.ascontiguousarray(
      np.broadcast_to(array, array.shape[:2] + (channels,)))


def _check_image_shape(image_shape: Sequence[int]) -> ImageShape:
  shape = tuple(int(d) for d in image_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f"image_shape must be (H, W, C), got {image_shape}.")
  return shape


@dataclasses.dataclass(frozen=True, eq=False)
class BlendTrigger:
  """A blending generator ``G(x) = (1 - alpha) x + alpha pattern``.

  Used for BadNets (binary ``alpha``: a stamped patch) and Blended (constant
  ``alpha``). Build one with :func:`badnets_trigger` or
  :func:`blended_trigger`.

  Attributes:
    name: ``"badnets"`` or ``"blended"`` (any short name for custom ones).
    pattern: float32 [H, W, C] in [0, 1], the trigger image t.
    alpha: float32 [H, W, C] in [0, 1], the blending weights.
    params: the JSON-serialisable settings it was built with, for the record.
  """

  kind: ClassVar[str] = "blend"
  array_names: ClassVar[tuple[str, ...]] = ("pattern", "alpha")

  name: str
  pattern: np.ndarray
  alpha: np.ndarray
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    pattern = np.asarray(self.pattern, np.float32)
    alpha = np.asarray(self.alpha, np.float32)
    if pattern.ndim != 3 or alpha.shape != pattern.shape:
      raise ValueError(
          f"pattern and alpha must both be [H, W, C], got {pattern.shape} and "
          f"{alpha.shape}.")
    for what, array in (("pattern", pattern), ("alpha", alpha)):
      if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{self.name} trigger {what} must lie in [0, 1].")
    object.__setattr__(self, "pattern", pattern)
    object.__setattr__(self, "alpha", alpha)
    object.__setattr__(self, "params", dict(self.params))

  @property
  def image_shape(self) -> ImageShape:
    """(H, W, C) of the images this trigger applies to."""
    return tuple(self.pattern.shape)

  def __call__(self, images: jax.Array) -> jax.Array:
    """float [B, H, W, C] in [0, 1] -> triggered float [B, H, W, C]."""
    return blend(images, self.pattern, self.alpha)


@dataclasses.dataclass(frozen=True, eq=False)
class WarpTrigger:
  """A WaNet warping generator ``G(x) = warp(x, grid)``.

  Build one with :func:`wanet_trigger`.

  Attributes:
    name: ``"wanet"``.
    grid: float32 [H, W, 2] in [-1, 1], the warped sampling coordinates (see
      :func:`warp`).
    params: the JSON-serialisable settings it was built with, for the record.
  """

  kind: ClassVar[str] = "warp"
  array_names: ClassVar[tuple[str, ...]] = ("grid",)

  name: str
  grid: np.ndarray
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    grid = np.asarray(self.grid, np.float32)
    if grid.ndim != 3 or grid.shape[2] != 2:
      raise ValueError(f"grid must be [H, W, 2], got {grid.shape}.")
    if not np.all(np.isfinite(grid)) or np.abs(grid).max() > 1:
      raise ValueError("grid coordinates must lie in [-1, 1].")
    object.__setattr__(self, "grid", grid)
    object.__setattr__(self, "params", dict(self.params))

  @property
  def image_shape(self) -> tuple[int, int]:
    """(H, W) of the images this trigger applies to (any channel count)."""
    return tuple(self.grid.shape[:2])

  def __call__(self, images: jax.Array) -> jax.Array:
    """float [B, H, W, C] in [0, 1] -> warped float [B, H, W, C]."""
    return warp(images, self.grid)

  def with_noise(self, images: jax.Array, key: jax.Array) -> jax.Array:
    """The noise-mode warp: each image gets its own :func:`noisy_grid`."""
    return warp(images, noisy_grid(key, self.grid, images.shape[0]))


Trigger = Union[BlendTrigger, WarpTrigger]
_TRIGGER_TYPES = {cls.kind: cls for cls in (BlendTrigger, WarpTrigger)}


def check_trigger_fits(trigger: Trigger, image_shape: Sequence[int]) -> None:
  """Raises ValueError unless ``trigger`` applies to images of this shape."""
  image_shape = tuple(image_shape)
  expected = trigger.image_shape
  if tuple(image_shape[:len(expected)]) != expected:
    raise ValueError(
        f"the {trigger.name} trigger was built for images {expected}, got "
        f"images {image_shape}; rebuild it for this image size.")


def badnets_trigger(image_shape: Sequence[int], size: int | None = None,
                    position: Sequence[int] | None = None,
                    pattern: str | np.ndarray = "checkerboard") -> BlendTrigger:
  """The BadNets patch trigger (Section 5.1, Appendix C.1).

  Args:
    image_shape: (H, W, C).
    size: side of the square patch in pixels; default ``3 * min(H, W) / 32``
      rounded (3 at 32x32 and at 28x28, 6 at 64x64), at least 1. Ignored
      when ``pattern`` is an array.
    position: (row, col) of the patch's top-left pixel; default the
      bottom-right corner.
    pattern: ``"checkerboard"`` (white-black 3x3, resized to ``size`` by
      nearest neighbour), ``"white"``, or an array [h, w] / [h, w, C] in
      [0, 1].

  Returns:
    A BlendTrigger with a binary ``alpha`` covering the patch.
  """
  height, width, channels = image_shape = _check_image_shape(image_shape)
  if isinstance(pattern, str):
    if size is None:
      size = max(1, int(round(3 * min(height, width) / 32)))
    size = int(size)
    if size < 1:
      raise ValueError(f"size must be >= 1, got {size}.")
    if pattern == "checkerboard":
      rows = np.arange(size) * 3 // size
      patch = _CHECKERBOARD[rows][:, rows]
    elif pattern == "white":
      patch = np.ones((size, size), np.float32)
    else:
      raise ValueError(
          f"unknown BadNets pattern {pattern!r}; use 'checkerboard', 'white' "
          "or an array in [0, 1].")
    pattern_name = pattern
  else:
    patch = pattern
    pattern_name = "custom"
  patch = _as_image_array(patch, image_shape, "BadNets pattern")
  patch_h, patch_w = patch.shape[:2]
  if position is None:
    position = (height - patch_h, width - patch_w)
  row, col = (int(p) for p in position)
  if row < 0 or col < 0 or row + patch_h > height or col + patch_w > width:
    raise ValueError(
        f"a {patch_h}x{patch_w} patch at position {(row, col)} does not fit "
        f"in {height}x{width} images; choose a position inside the image.")
  full = np.zeros(image_shape, np.float32)
  alpha = np.zeros(image_shape, np.float32)
  full[row:row + patch_h, col:col + patch_w] = patch
  alpha[row:row + patch_h, col:col + patch_w] = 1.0
  params = {"size": [patch_h, patch_w], "position": [row, col],
            "pattern": pattern_name}
  return BlendTrigger("badnets", full, alpha, params)


def stamp_patch_at(trigger: BlendTrigger, images: np.ndarray,
                   positions: np.ndarray) -> np.ndarray:
  """Stamps a BadNets patch trigger on each image at its own position.

  Sleeper Agent (Souri et al., NeurIPS 2022) crafts against a
  location-invariant trigger, with the patch of each target image at a
  random place.

  Args:
    trigger: a patch trigger from :func:`badnets_trigger`.
    images: uint8 [B, H, W, C], stored images.
    positions: int [B, 2], the (row, col) of each image's patch top-left.

  Returns:
    uint8 [B, H, W, C]: image i with the patch at ``positions[i]``.
  """
  if trigger.name != "badnets":
    raise ValueError(f"stamp_patch_at moves BadNets patches; got a "
                     f"{trigger.name!r} trigger.")
  images = np.asarray(images)
  check_trigger_fits(trigger, images.shape[1:])
  positions = np.asarray(positions, np.int64).reshape(-1, 2)
  if positions.shape[0] != images.shape[0]:
    raise ValueError(f"got {positions.shape[0]} positions for "
                     f"{images.shape[0]} images; give one (row, col) each.")
  (row, col), (patch_h, patch_w) = (trigger.params["position"],
                                    trigger.params["size"])
  height, width = trigger.image_shape[:2]
  fits = ((positions >= 0).all(axis=1)
          & (positions[:, 0] + patch_h <= height)
          & (positions[:, 1] + patch_w <= width))
  if not fits.all():
    bad = positions[np.flatnonzero(~fits)[0]]
    raise ValueError(
        f"a {patch_h}x{patch_w} patch at position {tuple(bad)} does not fit "
        f"in {height}x{width} images; draw rows in [0, {height - patch_h}] "
        f"and columns in [0, {width - patch_w}].")
  # The patch lies inside the image, so rolling moves it without wrapping.
  shifts = [(int(r) - row, int(c) - col) for r, c in positions]
  patterns = np.stack([np.roll(trigger.pattern, s, axis=(0, 1))
                       for s in shifts])
  alphas = np.stack([np.roll(trigger.alpha, s, axis=(0, 1)) for s in shifts])
  return apply_uint8(lambda floats: blend(floats, patterns, alphas), images)


def blended_trigger(key: jax.Array, image_shape: Sequence[int],
                    alpha: float = 0.1,
                    pattern: np.ndarray | None = None) -> BlendTrigger:
  """The Blended trigger (Section 3.1): ``(1 - alpha) x + alpha t``.

  Args:
    key: jax.random key that draws the pattern when ``pattern`` is None.
    image_shape: (H, W, C).
    alpha: blending ratio in (0, 1]; the paper uses 0.1 (Appendix C.1).
    pattern: optional image [H, W] / [H, W, C] in [0, 1]; default a seeded
      uniform random image with 256 grey levels per channel.

  Returns:
    A BlendTrigger with constant ``alpha``.
  """
  image_shape = _check_image_shape(image_shape)
  alpha = float(alpha)
  if not 0.0 < alpha <= 1.0:
    raise ValueError(f"alpha must be in (0, 1], got {alpha}.")
  if pattern is None:
    levels = jax.random.randint(key, image_shape, 0, 256)
    pattern = np.asarray(levels, np.float32) / 255.0
  pattern = _as_image_array(pattern, image_shape, "Blended pattern")
  if pattern.shape != image_shape:
    raise ValueError(
        f"the Blended pattern must cover the image {image_shape}, got "
        f"{pattern.shape}.")
  params = {"alpha": alpha}
  return BlendTrigger("blended", pattern, np.full(image_shape, alpha,
                                                  np.float32), params)


def _cubic_upsample_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] bicubic interpolation, corners aligned, edges clamped.

  The interpolation of ``torch.nn.functional.interpolate(mode='bicubic',
  align_corners=True)`` (Keys kernel, a = -0.75), which WaNet uses to turn
  its k x k control points into a smooth field.
  """
  if size_out == 1:
    positions = np.zeros(1)
  else:
    positions = np.arange(size_out) * (size_in - 1) / (size_out - 1)
  base = np.floor(positions).astype(np.int64)
  t = positions - base
  a = _CUBIC_A
  weights = np.stack([
      ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
      ((a + 2) * t - (a + 3)) * t * t + 1,
      ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
      ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
  ], axis=1)
  taps = np.clip(base[:, None] + np.arange(-1, 3)[None, :], 0, size_in - 1)
  matrix = np.zeros((size_out, size_in))
  np.add.at(matrix, (np.repeat(np.arange(size_out), 4), taps.ravel()),
            weights.ravel())
  return matrix


def wanet_trigger(key: jax.Array, image_shape: Sequence[int], k: int = 4,
                  s: float = 0.5) -> WarpTrigger:
  """The WaNet warping trigger with its default settings (k = 4, s = 0.5).

  Draws k x k x 2 control offsets uniformly in [-1, 1], normalises them to
  mean absolute value 1, upsamples them bicubically to H x W, and adds
  ``s * offset / size`` to the identity sampling grid, clipped to [-1, 1].

  Args:
    key: jax.random key for the control offsets.
    image_shape: (H, W, C) or (H, W).
    k: control points per side, 2 <= k <= min(H, W).
    s: warping strength (> 0).

  Returns:
    A WarpTrigger.
  """
  height, width = (int(d) for d in tuple(image_shape)[:2])
  k = int(k)
  s = float(s)
  if not 2 <= k <= min(height, width):
    raise ValueError(
        f"k must be between 2 and min(H, W) = {min(height, width)}, got {k}.")
  if not s > 0:
    raise ValueError(f"s must be positive, got {s}.")
  control = np.asarray(
      jax.random.uniform(key, (2, k, k), minval=-1.0, maxval=1.0), np.float64)
  control /= np.mean(np.abs(control))
  rows = _cubic_upsample_matrix(k, height)
  cols = _cubic_upsample_matrix(k, width)
  offsets = np.einsum("hk,ckl,wl->hwc", rows, control, cols)
  identity = np.stack(np.meshgrid(np.linspace(-1, 1, width),
                                  np.linspace(-1, 1, height)), axis=-1)
  grid = np.clip(identity + s * offsets / np.array([width, height]), -1, 1)
  return WarpTrigger("wanet", grid.astype(np.float32), {"k": k, "s": s})


def trigger_to_record(
    trigger: Trigger) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(arrays, JSON metadata) that :func:`trigger_from_record` turns back."""
  arrays = {name: getattr(trigger, name) for name in trigger.array_names}
  metadata = {"kind": trigger.kind, "name": trigger.name,
              "params": dict(trigger.params)}
  return arrays, metadata


def _patch_geometry(trigger: BlendTrigger) -> tuple[list[int], list[int]]:
  """([row, col], [h, w]) of the box the mask ``alpha`` is nonzero in."""
  covered = np.argwhere(np.any(trigger.alpha != 0, axis=2))
  if not covered.size:
    raise ValueError("the badnets trigger's stored mask (alpha) is zero "
                     "everywhere: it stamps no patch.")
  start, stop = covered.min(axis=0), covered.max(axis=0) + 1
  return start.tolist(), (stop - start).tolist()


def _check_badnets_record(trigger: BlendTrigger) -> None:
  """``params`` (position, size, pattern) against the stored arrays."""
  params = trigger.params
  position = list(fields.integers(params.get("position"),
                                  "badnets params.position", low=0))
  size = list(fields.integers(params.get("size"), "badnets params.size",
                              low=1))
  found_position, found_size = _patch_geometry(trigger)
  if (position, size) != (found_position, found_size):
    raise ValueError(
        f"the badnets trigger's params give position {position} and size "
        f"{size}, but its stored mask stamps a patch at position "
        f"{found_position} of size {found_size}.")
  (row, col), (height, width) = position, size
  box = np.zeros_like(trigger.alpha)
  box[row:row + height, col:col + width] = 1.0
  if not np.array_equal(trigger.alpha, box):
    raise ValueError(
        f"the badnets trigger's stored mask is not 1 on its {size} patch at "
        f"{position} and 0 elsewhere.")
  if np.any(trigger.pattern[box == 0]):
    raise ValueError("the badnets trigger's stored pattern is nonzero "
                     "outside its patch.")
  pattern = params.get("pattern")
  if pattern == "custom":
    return
  if pattern not in ("checkerboard", "white") or height != width:
    raise ValueError(
        f"the badnets trigger's params.pattern {pattern!r} with size {size} "
        "is not one badnets_trigger draws ('checkerboard' or 'white' "
        "squares, or 'custom').")
  drawn = badnets_trigger(trigger.image_shape, height, position, pattern)
  if not np.array_equal(drawn.pattern, trigger.pattern):
    raise ValueError(
        f"the badnets trigger's stored pattern is not the {pattern!r} patch "
        "its params.pattern names.")


def _check_blended_record(trigger: BlendTrigger) -> None:
  """``params.alpha`` against the stored blending weights."""
  alpha = fields.number(trigger.params.get("alpha"), "blended params.alpha")
  if not 0.0 < alpha <= 1.0 or not np.all(
      trigger.alpha == np.float32(alpha)):
    raise ValueError(
        f"the blended trigger's params.alpha = {alpha!r} is not the stored "
        f"blending weight (from {trigger.alpha.min()} to "
        f"{trigger.alpha.max()}); it must be one value in (0, 1].")


def _check_wanet_record(trigger: WarpTrigger) -> None:
  """``params`` (k, s) in the ranges :func:`wanet_trigger` accepts."""
  height, width = trigger.image_shape
  fields.integer(trigger.params.get("k"), "wanet params.k", 2,
                 min(height, width) + 1)
  s = fields.number(trigger.params.get("s"), "wanet params.s")
  if not s > 0:
    raise ValueError(f"wanet params.s must be positive, got {s}.")


# The built-in triggers: name -> (kind, the check of its params).
_RECORD_CHECKS = {
    "badnets": ("blend", _check_badnets_record),
    "blended": ("blend", _check_blended_record),
    "wanet": ("warp", _check_wanet_record),
}


def trigger_from_record(arrays: Mapping[str, np.ndarray],
                        metadata: Mapping[str, Any]) -> Trigger:
  """Rebuilds the trigger :func:`trigger_to_record` described.

  The settings of the built-in triggers are checked against their arrays:
  a BadNets patch's ``position`` and ``size`` against its stored mask (and a
  named pattern against the pattern it draws), Blended's ``alpha`` against
  its blending weights, WaNet's ``k`` and ``s`` against their ranges.
  Triggers under other names are rebuilt with their settings unread.

  Raises:
    ValueError: a field is missing, of the wrong type, or disagrees with the
      arrays; the message names the field and its value.
  """
  if not isinstance(metadata, Mapping):
    raise ValueError(f"the trigger record must be a JSON object, got "
                     f"{metadata!r}.")
  kind, name = metadata.get("kind"), metadata.get("name")
  params = metadata.get("params", {})
  if kind not in _TRIGGER_TYPES:
    raise ValueError(
        f"unknown trigger kind {kind!r}; expected one of "
        f"{sorted(_TRIGGER_TYPES)}.")
  if not isinstance(name, str) or not name or not isinstance(params,
                                                             Mapping):
    raise ValueError(f"the trigger record needs a name (a string) and params "
                     f"(an object), got {name!r} and {params!r}.")
  expected_kind, check = _RECORD_CHECKS.get(name, (kind, lambda _: None))
  if kind != expected_kind:
    raise ValueError(f"a {name!r} trigger is of kind {expected_kind!r}, but "
                     f"the record says {kind!r}.")
  cls = _TRIGGER_TYPES[kind]
  missing = [array for array in cls.array_names if array not in arrays]
  if missing:
    raise ValueError(f"the {kind} trigger record lacks arrays {missing}.")
  trigger = cls(name=name, params=dict(params),
                **{array: arrays[array] for array in cls.array_names})
  check(trigger)
  return trigger
