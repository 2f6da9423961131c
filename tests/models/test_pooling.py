"""The slice-based max pooling equals ``flax.linen.max_pool`` exactly.

Inputs of small integers put ties in most windows (as ReLU's zeros do), so
the tests pin down which element of a window receives the derivative.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import pooling

# Even and odd sizes; odd ones are padded as 'SAME' pads them (7 -> 4).
SHAPES = ((2, 8, 6, 3), (2, 7, 5, 3), (3, 1, 1, 4))


def _reference(x, window):
  return nn.max_pool(x, (window, window), strides=(window, window),
                     padding="SAME")


def _tied_inputs(shape, dtype, seed=0):
  values = np.random.default_rng(seed).integers(-2, 3, size=shape)
  return jnp.asarray(np.maximum(values, 0), dtype)  # Zeros as after ReLU.


def _value_and_vjp(pool, x):
  """(pool(x), its VJP applied to a fixed normal cotangent), compiled."""

  @jax.jit
  def run(x):
    pooled, vjp = jax.vjp(pool, x)
    return pooled, vjp(_normal(pooled.shape, x.dtype, seed=1))[0]

  return run(x)


def _normal(shape, dtype, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("dtype, window", [
    (jnp.float32, 2), (jnp.bfloat16, 2), (jnp.float32, 3)],
    ids=lambda p: getattr(p, "__name__", str(p)))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_value_and_gradient_equal_flax_max_pool_with_ties(shape, dtype,
                                                         window):
  x = _tied_inputs(shape, dtype)
  expected, expected_grad = _value_and_vjp(
      lambda v: _reference(v, window), x)
  pooled, grad = _value_and_vjp(
      lambda v: pooling.max_pool_by_slices(v, window), x)

  assert pooled.shape == expected.shape and pooled.dtype == expected.dtype
  np.testing.assert_array_equal(pooled, expected)
  np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_derivative_equals_flax_without_ties(shape):
  x, tangent = _normal(shape, jnp.float32, 0), _normal(shape, jnp.float32, 1)
  _, expected = jax.jvp(lambda v: _reference(v, 2), (x,), (tangent,))
  _, derivative = jax.jvp(pooling.max_pool_by_slices, (x,), (tangent,))
  np.testing.assert_array_equal(derivative, expected)


def test_forward_derivative_picks_the_element_the_gradient_picks():
  # With ties, the forward derivative takes the tangent of the element that
  # receives the reverse derivative (flax's forward derivative breaks ties
  # in another order than its own reverse derivative).
  x = _tied_inputs((2, 8, 8, 3), jnp.float32)
  tangent = _normal(x.shape, jnp.float32, 1)
  pooled, vjp = jax.vjp(pooling.max_pool_by_slices, x)
  picked = vjp(jnp.ones_like(pooled))[0]
  _, expected_picked = jax.vjp(lambda v: _reference(v, 2), x)
  np.testing.assert_array_equal(picked,
                                expected_picked(jnp.ones_like(pooled))[0])

  _, derivative = jax.jvp(pooling.max_pool_by_slices, (x,), (tangent,))
  picked_tangent = (tangent * picked).reshape(2, 4, 2, 4, 2, 3).sum((2, 4))
  np.testing.assert_array_equal(derivative, picked_tangent)


def test_nan_propagates_like_flax():
  x = _normal((1, 4, 4, 1), jnp.float32, 0).at[0, 1, 2, 0].set(jnp.nan)
  pooled = pooling.max_pool_by_slices(x, 2)
  np.testing.assert_array_equal(np.isnan(pooled), np.isnan(_reference(x, 2)))
  assert np.isnan(pooled[0, 0, 1, 0])


def test_dispatch_keeps_reduce_window_off_cpu(monkeypatch):
  x = jnp.zeros((1, 4, 4, 1))

  def primitives(fn):
    return {str(eqn.primitive) for eqn in jax.make_jaxpr(fn)(x).eqns}

  # A new lambda each time: tracing is cached per function.
  assert "reduce_window_max" not in primitives(lambda v: pooling.max_pool(v))
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert primitives(lambda v: pooling.max_pool(v)) == primitives(
      lambda v: _reference(v, 2))


def test_rejects_non_positive_window():
  with pytest.raises(ValueError, match="window 0"):
    pooling.max_pool_by_slices(jnp.zeros((1, 4, 4, 1)), 0)
