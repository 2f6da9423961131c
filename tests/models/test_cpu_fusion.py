"""The CPU fusion hints change nothing numerically and steer XLA:CPU as said.

Values and derivatives must equal ``jax.nn.relu`` and the identity exactly
(ties at zero, infinities and NaN included); on the CPU the compiled
gradient of a conv-BatchNorm-ReLU-conv network must transpose materialised
arrays only, with nothing recomputed inside the transposes; other backends
must get the plain operations.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxwm.models import common, cpu_fusion

SPECIAL = np.array([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, np.nan, 3e38,
                    -3e38, 1e-45], np.float32)


def _inputs():
  """float32 [4, 40]: normal draws, small integers (ties at 0), specials."""
  rng = np.random.default_rng(0)
  rows = [rng.normal(size=40), rng.integers(-2, 3, 40),
          np.resize(SPECIAL, 40), rng.normal(size=40) * 1e30]
  return jnp.asarray(np.stack(rows), jnp.float32)


def _value_and_vjp(function, x):
  @jax.jit
  def run(x):
    value, vjp = jax.vjp(function, x)
    cotangent = jnp.asarray(
        np.random.default_rng(1).normal(size=x.shape), jnp.float32)
    return value, vjp(cotangent)[0]
  return run(x)


def test_relu_equals_jax_relu_in_value_and_derivative():
  x = _inputs()
  expected, expected_grad = _value_and_vjp(jax.nn.relu, x)
  value, grad = _value_and_vjp(cpu_fusion.relu, x)
  np.testing.assert_array_equal(value, expected)  # NaN stays NaN.
  np.testing.assert_array_equal(grad, expected_grad)
  tangent = jnp.ones_like(x)
  np.testing.assert_array_equal(
      jax.jvp(cpu_fusion.relu, (x,), (tangent,))[1],
      jax.jvp(jax.nn.relu, (x,), (tangent,))[1])


@pytest.mark.parametrize("function", [cpu_fusion.computed_once,
                                      cpu_fusion.cotangent_computed_once],
                         ids=lambda f: f.__name__)
def test_hints_are_the_identity_in_value_and_gradient(function):
  x = _inputs()
  value, grad = _value_and_vjp(lambda v: jnp.sin(function(v)) * v, x)
  expected, expected_grad = _value_and_vjp(lambda v: jnp.sin(v) * v, x)
  np.testing.assert_array_equal(value, expected)
  np.testing.assert_array_equal(grad, expected_grad)


def test_cotangent_hint_allows_forward_over_reverse_and_second_order():
  # The crafting gradient takes jax.jvp of an input gradient in parameter
  # space; the alignment objective may also be differentiated twice.
  x = jnp.linspace(-2.0, 2.0, 7)
  w = jnp.asarray(0.7)

  def loss(x, w, hint):
    return jnp.sum(jnp.tanh(hint(x * w)) ** 2)

  for order in (jax.jvp, "grad2"):
    results = []
    for hint in (lambda v: v, cpu_fusion.cotangent_computed_once):
      input_grad = lambda w, hint=hint: jax.grad(loss)(x, w, hint)
      if order is jax.jvp:
        results.append(jax.jvp(input_grad, (w,), (jnp.asarray(1.0),))[1])
      else:
        results.append(jax.grad(lambda w: input_grad(w).sum())(w))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


@pytest.mark.parametrize("platform, applied", [
    ("cpu", True), ("cuda", False), ("tpu", False)])
def test_hints_apply_only_when_lowering_for_the_cpu(platform, applied):
  def forward_and_backward(x):
    y, vjp = jax.vjp(
        lambda v: cpu_fusion.relu(cpu_fusion.cotangent_computed_once(v)), x)
    return y, vjp(jnp.ones_like(y))[0]

  text = jax.jit(forward_and_backward).trace(jnp.ones((3, 4))).lower(
      lowering_platforms=(platform,)).as_text()
  # The hint is max(x, min(x, 0)): one minimum for the ReLU output, one for
  # the gradient; plain ReLU has no minimum at all.
  assert text.count("stablehlo.minimum") == (2 if applied else 0)


class _ConvBatchNormReluConv(nn.Module):
  """conv-BN-ReLU, then a ResNet block (two convs, shortcut), then a conv."""

  @nn.compact
  def __call__(self, x):
    def conv(x):
      return nn.Conv(16, (3, 3), use_bias=False)(x)

    def batch_norm(x):
      return common.batch_norm(True, jnp.float32)(x)

    x = cpu_fusion.relu(batch_norm(conv(x)))
    y = batch_norm(conv(cpu_fusion.relu(batch_norm(conv(x)))))
    return conv(cpu_fusion.relu(x + y)).sum()


def _fused_transposes_of_activations(compiled_text: str) -> list[set[str]]:
  """The ops (besides parameters) of each fused computation that transposes
  a 4-D array with a dimension of 16 or more (activations, not kernels)."""
  computations = re.findall(r"\n%[\w.\-]+ \([^\n]*\) -> (\S+) \{\n(.*?)\n\}",
                            compiled_text, re.S)
  fusions = []
  for output, body in computations:
    ops = set(re.findall(r"= \S+ ([a-z][\w\-]*)\(", body)) - {"parameter"}
    shape = [int(size) for size in
             re.search(r"\[([\d,]*)\]", output).group(1).split(",") if size]
    if "transpose" in ops and len(shape) == 4 and max(shape) >= 16:
      fusions.append(ops)
  return fusions


def _compiled_training_gradient() -> str:
  """Optimised CPU HLO of the loss and its gradient in parameters and input
  (so that every convolution needs both its gradients)."""
  model = _ConvBatchNormReluConv()
  x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 8, 8, 4)),
                  jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)

  def loss(params, x):
    value, _ = model.apply({**variables, "params": params}, x,
                           mutable=["batch_stats"])
    return value

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(
      variables["params"], x).compile().as_text()


PLAIN_TRANSPOSE = {"transpose", "copy", "reverse"}  # reverse: kernel flips.


def test_weight_gradient_transposes_read_materialised_arrays_on_the_cpu():
  transposes = _fused_transposes_of_activations(_compiled_training_gradient())
  assert len(transposes) >= 8
  for ops in transposes:
    assert ops <= PLAIN_TRANSPOSE, ops


def test_without_the_hints_xla_recomputes_inside_the_transposes(monkeypatch):
  # The control for the test above: it would notice the hints missing.
  monkeypatch.setattr(cpu_fusion, "relu", jax.nn.relu)
  monkeypatch.setattr(cpu_fusion, "cotangent_computed_once", lambda x: x)
  transposes = _fused_transposes_of_activations(_compiled_training_gradient())
  assert any(not ops <= PLAIN_TRANSPOSE for ops in transposes)
