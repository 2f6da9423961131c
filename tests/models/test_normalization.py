"""jaxwm's BatchNorm equals ``flax.linen.BatchNorm`` up to rounding."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import normalization

SHAPE = (8, 5, 5, 6)  # [B, H, W, C]


def _modules(train, dtype=jnp.float32):
  kwargs = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                dtype=dtype)
  return normalization.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)


def _variables():
  """Non-trivial parameters and running statistics, float32 [C]."""
  rng = np.random.default_rng(0)
  channels = SHAPE[-1]

  def draw(low, high):
    return jnp.asarray(rng.uniform(low, high, channels), jnp.float32)

  return {"params": {"scale": draw(0.5, 2), "bias": draw(-1, 1)},
          "batch_stats": {"mean": draw(-1, 1), "var": draw(0.5, 2)}}


def _inputs(dtype=jnp.float32):
  # Channel means far from 0, as conv outputs have.
  rng = np.random.default_rng(1)
  x = rng.normal(size=SHAPE) * rng.uniform(0.5, 3, SHAPE[-1]) + 2.0
  return jnp.asarray(x, dtype)


def _apply(module, variables, x, train):
  """(output, updated state), compiled (eager flax takes many seconds)."""
  mutable = ("batch_stats",) if train else ()
  return jax.jit(module.apply, static_argnames="mutable")(
      variables, x, mutable=mutable)


def test_variables_have_flax_names_shapes_and_dtypes():
  ours, theirs = _modules(train=True)
  x = _inputs()
  shapes = [jax.tree.map(lambda a: (a.shape, a.dtype),
                         jax.eval_shape(module.init, jax.random.key(0), x))
            for module in (ours, theirs)]
  assert shapes[0] == shapes[1]


@pytest.mark.parametrize("train", (True, False), ids=("train", "eval"))
def test_output_and_running_statistics_match_flax(train):
  (ours, theirs), variables, x = _modules(train), _variables(), _inputs()
  (y, state), (expected, expected_state) = (
      _apply(module, variables, x, train) for module in (ours, theirs))
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  if train:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 state, expected_state)


@pytest.mark.parametrize("train", (True, False), ids=("train", "eval"))
def test_gradients_match_flax(train):
  (ours, theirs), variables, x = _modules(train), _variables(), _inputs()
  cotangent = jnp.asarray(np.random.default_rng(2).normal(size=SHAPE),
                          jnp.float32)

  def gradients(module):
    def output(params, x):
      y, _ = _apply(module, {**variables, "params": params}, x, train)
      return jnp.vdot(y, cotangent)
    return jax.jit(jax.grad(output, argnums=(0, 1)))(variables["params"], x)

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-4),
               gradients(ours), gradients(theirs))


def test_bfloat16_output_matches_flax_to_bfloat16_rounding():
  (ours, theirs), variables = _modules(True, jnp.bfloat16), _variables()
  x = _inputs(jnp.bfloat16)
  (y, _), (expected, _) = (_apply(module, variables, x, True)
                           for module in (ours, theirs))
  assert y.dtype == expected.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32),
                             np.asarray(expected, np.float32), atol=3e-2)
