"""jaxwm's CPU compile options: they take effect, and change no numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxwm.models import get_model
from jaxwm.train import compiler, create_train_state, step as step_lib

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu",
                                reason="the options are for XLA:CPU")

KERNEL = (3, 3, 4, 8)  # HWIO


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO",
                                                         "NHWC"))


def _compiled_text(jitted) -> str:
  x = jnp.ones((2, 6, 6, KERNEL[2]))
  w = jnp.ones(KERNEL)
  return jitted.lower(x, w).compile().as_text()


def test_options_keep_convolutions_out_of_ynnpack():
  if "__ynn_fusion" not in _compiled_text(jax.jit(_conv)):
    pytest.skip("this jaxlib does not hand convolutions to YNNPACK")
  assert compiler.cpu_compiler_options(), "jaxlib refused the options"
  text = _compiled_text(compiler.jit(_conv))
  assert "__ynn_fusion" not in text
  assert "convolution(" in text


def test_jit_keeps_the_callers_own_options():
  own = {"xla_cpu_enable_fast_math": False}
  jitted = compiler.jit(_conv, compiler_options=own)
  x = jnp.ones((2, 6, 6, KERNEL[2]))
  np.testing.assert_allclose(jitted(x, jnp.ones(KERNEL)),
                             jax.jit(_conv)(x, jnp.ones(KERNEL)), rtol=1e-6)


def _three_steps():
  """Params, batch statistics and losses after three CNN steps."""
  model = get_model("cnn", 10, width=8, dense_width=16)
  optimizer = optax.sgd(0.05, momentum=0.9, nesterov=True)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (16, 28, 28, 1)),
                                jnp.uint8),
           "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  state = create_train_state(model, optimizer, (28, 28, 1),
                             jax.random.PRNGKey(0))
  step = step_lib.make_train_step(model, optimizer, donate=False)
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch, jax.random.PRNGKey(1))
    losses.append(float(metrics["loss"]))
  return (state.params, state.model_state), losses


def test_training_steps_match_xla_defaults(monkeypatch):
  """jaxwm's options and XLA's defaults agree to float32 rounding."""
  fast, fast_losses = _three_steps()
  monkeypatch.setattr(compiler, "cpu_compiler_options", dict)
  plain, plain_losses = _three_steps()
  np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
