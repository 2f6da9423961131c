"""Activations and gradients that XLA:CPU computes once, not in every consumer.

XLA fuses an elementwise producer into each of its consumers, recomputing it
there, when the producer reads at most one full-size array (per-channel
factors are broadcasts and do not count): BatchNorm's multiply-add and the
ReLU after it are such producers. On the CPU this is costly in one place:
the weight gradient of a convolution reads its input activations as [C, H, W,
B] and its output gradient as [H, W, B, C], so XLA:CPU transposes both, and
fuses into each transpose a recomputation of the BatchNorm-ReLU chain (or of
BatchNorm's input gradient, two full-size reads) in transposed, cache-hostile
order. In a profile of ResNet-18's training step these fused transposes took
about a fifth of the time; removing the recomputation made the step 16-20%
faster (benchmarks/RESULTS.md).

The identity ``max(x, min(x, 0))`` reads two full-size arrays, so XLA
computes it once into a buffer that every consumer then reads (a plain
transpose for the weight gradient). :func:`relu` applies it to ReLU outputs
and :func:`cotangent_computed_once` to the gradient flowing back into a
convolution's output. Both are the identity in value (for every float,
infinities and NaN included; the sign of a zero may change) and in
derivative, and both apply only when lowering for the CPU: other backends
get plain ``jax.nn.relu`` and the unchanged gradient (``lax.platform_dependent``
picks the branch when the program is lowered).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _two_operand_identity(x: jax.Array) -> jax.Array:
  """x as max(x, min(x, 0)): equal to x, but reads x twice."""
  return jnp.maximum(x, jnp.minimum(x, jnp.zeros((), x.dtype)))


@jax.custom_jvp
def computed_once(x: jax.Array) -> jax.Array:
  """x, any shape; on the CPU in a form that XLA materialises once."""
  return lax.platform_dependent(x, cpu=_two_operand_identity,
                                default=lambda x: x)


@computed_once.defjvp
def _computed_once_jvp(primals, tangents):
  (x,), (tangent,) = primals, tangents
  return computed_once(x), tangent


def relu(x: jax.Array) -> jax.Array:
  """``jax.nn.relu(x)``, same value and derivative, computed once on the CPU."""
  return computed_once(jax.nn.relu(x))


@jax.custom_vjp
def cotangent_computed_once(x: jax.Array) -> jax.Array:
  """The identity, whose incoming gradient is computed once on the CPU.

  Apply to a convolution's output: the gradient reaching it (BatchNorm's
  input gradient, say) is then evaluated once for both the convolution's
  input gradient and its weight gradient.
  """
  return x


def _cotangent_forward(x):
  return x, None


def _cotangent_backward(_, cotangent):
  return (computed_once(cotangent),)


cotangent_computed_once.defvjp(_cotangent_forward, _cotangent_backward)
