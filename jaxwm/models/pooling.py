"""Max pooling over non-overlapping windows, fast on every XLA backend.

``flax.linen.max_pool`` lowers to ``reduce_window``, whose derivative is a
``select_and_scatter``; XLA:CPU runs that derivative more than ten times
slower than the pooling itself (nearly half of the Fashion-MNIST CNN's
training step). :func:`max_pool_by_slices` computes the same function from
the window's strided slices with elementwise selects, which XLA:CPU fuses
into one loop in each direction. :func:`max_pool` uses it on the CPU and
keeps ``flax.linen.max_pool`` (whose compiled form is native there) on
other backends.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def max_pool(x: jax.Array, window: int = 2) -> jax.Array:
  """``window`` x ``window`` max pooling, stride ``window``, 'SAME' padding.

  Equal to ``nn.max_pool(x, (window, window), strides=(window, window),
  padding="SAME")`` in value and gradient on every backend.

  Args:
    x: float [B, H, W, C].
    window: side of the square window, also its stride.

  Returns:
    [B, ceil(H / window), ceil(W / window), C], the dtype of ``x``.
  """
  if jax.default_backend() == "cpu":
    return max_pool_by_slices(x, window)
  return nn.max_pool(x, (window, window), strides=(window, window),
                     padding="SAME")


def max_pool_by_slices(x: jax.Array, window: int = 2) -> jax.Array:
  """:func:`max_pool` from strided slices and selects.

  The input is padded with -inf as 'SAME' pooling pads it (7 -> 4 for a
  window of 2), then the maximum of the window's ``window**2`` strided
  slices is taken with selects that keep the earlier slice on ties. So the
  derivative, forward (JVP) or reverse (VJP), goes to the first maximum of
  each window in row-major order: the element ``select_and_scatter``, the
  derivative of ``nn.max_pool``, picks. A NaN in a window makes its output
  NaN, as with ``nn.max_pool``.

  Args:
    x: float [B, H, W, C].
    window: side of the square window, also its stride.

  Returns:
    [B, ceil(H / window), ceil(W / window), C], the dtype of ``x``.
  """
  if window < 1:
    raise ValueError(f"max_pool window {window} must be a positive integer.")
  pads = lax.padtype_to_pads(x.shape[1:3], (window, window),
                             (window, window), "SAME")
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)),
              constant_values=jnp.array(-jnp.inf, x.dtype))
  pooled = None
  for row in range(window):
    for col in range(window):
      candidate = x[:, row::window, col::window]
      pooled = candidate if pooled is None else _keep_first_max(
          pooled, candidate)
  return pooled


def _keep_first_max(earlier: jax.Array, later: jax.Array) -> jax.Array:
  """Elementwise maximum that returns ``earlier`` on ties; NaN wins."""
  return jnp.where((earlier >= later) | jnp.isnan(earlier), earlier, later)
