"""Visibility regularisers on a perturbation (Fowl et al., Appendix A.8).

Added to the alignment objective with non-negative weights, they trade
attack strength for less visible perturbations (Table 9): an l2 penalty, a
total-variation penalty, and a structural-similarity penalty 1 - SSIM.
Every function maps perturbations delta (and, for SSIM, the clean images x)
of shape [B, H, W, C] to a float32 scalar, the mean over the batch; all are
differentiable in delta.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# SSIM constants for a data range of 1 (Wang et al., 2004): (K1 L)^2, (K2 L)^2.
_SSIM_C1 = 0.01 ** 2
_SSIM_C2 = 0.03 ** 2
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def l2_penalty(delta: jax.Array) -> jax.Array:
  """Mean squared perturbation: mean over pixels of delta^2."""
  return jnp.mean(jnp.square(delta.astype(jnp.float32)))


def total_variation(delta: jax.Array) -> jax.Array:
  """Anisotropic total variation: mean |vertical| + mean |horizontal|
  difference."""
  delta = delta.astype(jnp.float32)
  vertical = jnp.abs(delta[:, 1:] - delta[:, :-1])
  horizontal = jnp.abs(delta[:, :, 1:] - delta[:, :, :-1])
  return jnp.mean(vertical) + jnp.mean(horizontal)


def _gaussian_window(size: int, sigma: float) -> jax.Array:
  offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  return weights / jnp.sum(weights)


def _local_mean(images: jax.Array, window: jax.Array) -> jax.Array:
  """Separable Gaussian filter, per channel, 'valid' borders."""
  channels = images.shape[-1]
  size = window.shape[0]
  kernel_h = jnp.tile(window.reshape(size, 1, 1, 1), (1, 1, 1, channels))
  kernel_w = jnp.tile(window.reshape(1, size, 1, 1), (1, 1, 1, channels))
  numbers = ("NHWC", "HWIO", "NHWC")
  out = jax.lax.conv_general_dilated(images, kernel_h, (1, 1), "VALID",
                                     dimension_numbers=numbers,
                                     feature_group_count=channels)
  return jax.lax.conv_general_dilated(out, kernel_w, (1, 1), "VALID",
                                      dimension_numbers=numbers,
                                      feature_group_count=channels)


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean structural similarity of two image batches in [0, 1].

  Gaussian window of 11 pixels (sigma 1.5), shrunk to the image size for
  smaller images; constants for a data range of 1 (Wang et al., 2004).

  Args:
    x, y: float [B, H, W, C].

  Returns:
    float32 scalar, 1 for identical batches.
  """
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  size = min(_SSIM_WINDOW, x.shape[1], x.shape[2])
  window = _gaussian_window(size, _SSIM_SIGMA)
  mu_x, mu_y = _local_mean(x, window), _local_mean(y, window)
  var_x = _local_mean(x * x, window) - mu_x ** 2
  var_y = _local_mean(y * y, window) - mu_y ** 2
  cov = _local_mean(x * y, window) - mu_x * mu_y
  numerator = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
  denominator = (mu_x ** 2 + mu_y ** 2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
  return jnp.mean(numerator / denominator)


@dataclasses.dataclass(frozen=True)
class Regularizers:
  """Weights of the visibility penalties (all 0: none, as in Fowl et al.).

  Attributes:
    l2: weight of :func:`l2_penalty`.
    tv: weight of :func:`total_variation`.
    ssim: weight of 1 - :func:`ssim` (clean vs perturbed images).
  """

  l2: float = 0.0
  tv: float = 0.0
  ssim: float = 0.0

  def __post_init__(self):
    for name in ("l2", "tv", "ssim"):
      if getattr(self, name) < 0:
        raise ValueError(f"regulariser weight {name}={getattr(self, name)} "
                         "must be >= 0.")

  def __call__(self, images: jax.Array, delta: jax.Array) -> jax.Array:
    """The weighted penalty of ``delta`` on clean ``images`` [B, H, W, C]."""
    penalty = jnp.zeros((), jnp.float32)
    if self.l2:
      penalty += self.l2 * l2_penalty(delta)
    if self.tv:
      penalty += self.tv * total_variation(delta)
    if self.ssim:
      penalty += self.ssim * (1.0 - ssim(images, images + delta))
    return penalty
