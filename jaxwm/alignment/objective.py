"""Gradient alignment: the objective every crafted poison in jaxwm minimises.

Fowl et al. (availability poisons, Section 2.2, Eq. 3) and the UBW paper
(UBW-C, Appendix B, Eq. 8; Sleeper Agent is its targeted twin) craft
bounded perturbations delta so that the parameter gradient of the ordinary
training loss on the perturbed samples points where a *target gradient*
points:

    A(delta, theta) = 1 - <T, g(delta)> / (||T|| ||g(delta)||),
    g(delta) = grad_theta (1/B) sum_i L(f(aug(x_i + delta_i); theta), y_i),

with every parameter of the model (a pytree, flattened implicitly by
:func:`tree_vdot`) in the inner products. The target T = grad_theta of a
*target loss* on a *target set*, fixed while delta moves:

* availability (Fowl et al., Eq. 4): the reverse cross-entropy
  -log(1 - p_y) (:func:`reverse_cross_entropy`) on the clean training data,
  so that training on the poisons unlearns the true labels;
* UBW-C (UBW paper, Eq. 9, maximised): cross-entropy plus lambda times the
  prediction entropy on triggered source-class samples, written as the loss
  :func:`dispersion_loss` = -(CE + lambda H) to be minimised;
* Sleeper Agent: cross-entropy towards the target label on triggered source
  samples (:func:`jaxwm.train.losses.cross_entropy` with target labels).

TensorClog (Fowl et al., Section 3.3) minimises the crafting gradient's norm
instead (:func:`gradient_norm_loss`).

Gradients are taken with the model's batch statistics frozen (``train=False``),
as the reference implementations put the surrogate in evaluation mode while
crafting, so a sample's gradient does not depend on its batch-mates' pixels
through BatchNorm.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxwm.metrics import entropy_from_logits
from jaxwm.train import compiler, losses, sharding
from jaxwm.train.step import to_float_images

# (logits float [B, K], labels int [B]) -> per-example losses float [B].
PerExampleLoss = Callable[[jax.Array, jax.Array], jax.Array]
# (params, model_state) -> the target gradient, a pytree like params.
Target = Callable[[Any, Any], Any]


def tree_vdot(a: Any, b: Any) -> jax.Array:
  """<a, b> over all leaves of two pytrees of equal structure (float32
  scalar)."""
  return sum(jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def tree_norm(a: Any) -> jax.Array:
  """||a||_2 over all leaves of a pytree (float32 scalar)."""
  return jnp.sqrt(tree_vdot(a, a))


def alignment_loss(crafting_grad: Any, target_grad: Any,
                   independent: bool = False) -> jax.Array:
  """A = 1 - cos(T, g) (Fowl et al., Eq. 3; UBW paper, Eq. 8 negated).

  Args:
    crafting_grad: g, a parameter pytree (depends on delta).
    target_grad: T, a pytree of the same structure (constant).
    independent: the "online" variant of Fowl et al., Appendix A.7: the
      denominator ||T|| ||g|| is detached (``stop_gradient``), so each
      perturbation maximises its own inner product <T, g> and poisons can
      be crafted independently of one another.

  Returns:
    float32 scalar in [0, 2]: 0 for aligned, 1 for orthogonal, 2 for opposite
    gradients. The value is the same in both modes; only its derivative
    differs.
  """
  denominator = tree_norm(target_grad) * tree_norm(crafting_grad)
  if independent:
    denominator = jax.lax.stop_gradient(denominator)
  return 1.0 - tree_vdot(target_grad, crafting_grad) / denominator


def gradient_norm_loss(crafting_grad: Any) -> jax.Array:
  """TensorClog's objective ||g||_2 (Fowl et al., Section 3.3), minimised."""
  return tree_norm(crafting_grad)


def reverse_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """-log(1 - p_y), Fowl et al., Section 2.2 (the availability target loss).

  Computed as logsumexp(logits) - logsumexp(logits without class y), which
  stays finite when p_y rounds to 1 in float32.

  Args:
    logits: float [B, K].
    labels: int [B].

  Returns:
    float32 [B], >= 0.
  """
  logits = logits.astype(jnp.float32)
  own = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
  others = jnp.where(own, -jnp.inf, logits)
  return (jax.nn.logsumexp(logits, axis=-1) -
          jax.nn.logsumexp(others, axis=-1))


def dispersion_loss(logits: jax.Array, labels: jax.Array,
                    lam: float = 2.0) -> jax.Array:
  """-(CE(f(x), y) + lambda H(f(x))): UBW-C's target (UBW paper, Eq. 9).

  UBW-C maximises cross-entropy plus lambda times the entropy of the
  prediction on triggered source-class samples (Eq. 6, lambda = 2 in
  Section 5.1); as a loss to descend, its sign is flipped.

  Both terms are computed from log-softmax, so the loss and its gradient
  stay finite however confident the surrogate is.

  Args:
    logits: float [B, K] on triggered images G_i(x).
    labels: int [B], their true labels.
    lam: lambda >= 0.

  Returns:
    float32 [B].
  """
  return -(losses.cross_entropy(logits, labels) +
           lam * entropy_from_logits(logits))


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """sum(w v) / max(sum(w), 1): the mean over the real (w = 1) rows."""
  return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), 1.0)


def loss_gradient(model, variables: Any, images: jax.Array, labels: jax.Array,
                  weights: jax.Array,
                  per_example_loss: PerExampleLoss = losses.cross_entropy
                  ) -> Any:
  """grad_theta of the weighted mean loss, batch statistics frozen.

  Args:
    model: a jaxwm model.
    variables: {"params": ..., and its model state}.
    images: float [B, H, W, C] in [0, 1] (differentiable).
    labels: int [B].
    weights: float [B], 1 for real rows and 0 for padding.
    per_example_loss: (logits, labels) -> [B].

  Returns:
    A pytree like ``variables["params"]``.
  """
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}

  def mean_loss(params):
    logits = model.apply({"params": params, **model_state}, images,
                         train=False)
    return weighted_mean(per_example_loss(logits, labels), weights)

  return jax.grad(mean_loss)(params)


def pad_to_batches(array: np.ndarray, batch_size: int) -> np.ndarray:
  """[N, ...] -> [ceil(N / B), B, ...], padding the last batch with zeros."""
  count = array.shape[0]
  num_batches = max(1, -(-count // batch_size))
  padded = np.zeros((num_batches * batch_size, *array.shape[1:]), array.dtype)
  padded[:count] = array
  return padded.reshape(num_batches, batch_size, *array.shape[1:])


def batch_weights(count: int, batch_size: int) -> np.ndarray:
  """float32 [ceil(N / B), B]: 1 for the N real rows, 0 for padding."""
  return pad_to_batches(np.ones(count, np.float32), batch_size)


def crafting_gradient(model, variables: Any, images: jax.Array,
                      delta: jax.Array, labels: jax.Array, weights: jax.Array,
                      objective: Callable[[Any], jax.Array],
                      transform: Callable[[jax.Array], jax.Array] | None = None
                      ) -> tuple[jax.Array, jax.Array]:
  """An objective of the crafting gradient and its derivative in delta.

  With g(delta) = grad_theta L(transform(x + delta)) (:func:`loss_gradient`)
  and an objective h(g) (e.g. :func:`alignment_loss` against a fixed
  target), the chain rule gives d h / d delta = J^T v with v = dh/dg and
  J = d g / d delta = d^2 L / (d theta d delta). By the symmetry of mixed
  partial derivatives, J^T v = d/d s [grad_delta L(delta; theta + s v)] at
  s = 0: one forward-mode derivative (``jax.jvp`` along v in parameter
  space) of the ordinary input gradient. This forward-over-reverse product
  is exact (equal to reverse-over-reverse ``jax.grad`` of h(g(delta)) up to
  rounding) and runs about 3x faster on CPU than differentiating the
  backward pass itself; ``stop_gradient`` inside h (the independent mode)
  is honoured because v is h's own gradient.

  Args:
    model: a jaxwm model.
    variables: its variables (batch statistics frozen).
    images: float [B, H, W, C] in [0, 1], the clean samples x.
    delta: float [B, H, W, C], their perturbations.
    labels: int [B], the training labels.
    weights: float [B], 1 for real rows and 0 for padding.
    objective: h, a scalar function of a parameter pytree.
    transform: applied to x + delta before the model (differentiable
      augmentation with a fixed key); None for none.

  Returns:
    (h(g(delta)) float32 scalar, d h / d delta float32 [B, H, W, C]).
  """
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}

  def training_loss(delta, params):
    inputs = images + delta
    if transform is not None:
      inputs = transform(inputs)
    logits = model.apply({"params": params, **model_state}, inputs,
                         train=False)
    return weighted_mean(losses.cross_entropy(logits, labels), weights)

  grad = jax.grad(training_loss, argnums=1)(delta, params)
  value, cotangent = jax.value_and_grad(objective)(grad)
  _, delta_grad = jax.jvp(
      lambda p: jax.grad(training_loss, argnums=0)(delta, p), (params,),
      (cotangent,))
  return value, delta_grad


def make_target(model, images: np.ndarray, labels: np.ndarray,
                per_example_loss: PerExampleLoss, *, batch_size: int,
                mesh: Mesh | None = None) -> Target:
  """A target: ``target(params, model_state)`` -> grad of the mean target loss.

  The target set stays on the devices, split into batches sharded along
  ``"data"``; the gradient of its mean loss (Fowl et al., Eq. 4, up to the
  factor N, which the cosine ignores) is accumulated batch by batch by one
  compiled function.

  Args:
    model: a jaxwm model.
    images: uint8 or float [N, H, W, C], the target set (clean training data
      for availability, triggered source samples for UBW-C and Sleeper
      Agent).
    labels: int [N], the labels the target loss uses (true labels, or the
      target label for Sleeper Agent).
    per_example_loss: the target loss, (logits, labels) -> [N].
    batch_size: rows per batch, a multiple of the mesh's devices.
    mesh: device mesh; default all devices.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  batches = upload_target_set(images, labels, batch_size=batch_size,
                              mesh=mesh)
  return target_on_batches(model, batches, per_example_loss, mesh)


def upload_target_set(images: np.ndarray, labels: np.ndarray, *,
                      batch_size: int, mesh: Mesh
                      ) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
  """The target set on the devices, for :func:`target_on_batches`.

  Returns:
    Batches (x [B, H, W, C], y [B], w [B]), each sharded along ``"data"``,
    zero-padded to ``batch_size`` rows; w is 1/N for real rows, 0 for
    padding. Several targets (losses) can share one upload.
  """
  sharding.check_batch_size(batch_size, mesh)
  if images.shape[0] == 0 or images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"the target set has {images.shape[0]} images and {labels.shape[0]} "
        "labels; it needs at least one image and one label per image.")
  count = images.shape[0]
  return _device_batches(mesh, batch_size, images,
                         np.asarray(labels, np.int32),
                         np.full(count, 1.0 / count, np.float32))


def target_on_batches(model, batches: list[tuple[jax.Array, ...]],
                      per_example_loss: PerExampleLoss, mesh: Mesh
                      ) -> Target:
  """The target of :func:`make_target` over an uploaded target set."""
  accumulate = _target_accumulator(model, per_example_loss, mesh)

  def target(params, model_state):
    variables = {"params": params, **model_state}
    total = jax.tree.map(jnp.zeros_like, params)
    for rows in batches:
      total = accumulate(total, variables, rows)
    return total

  return target


@functools.lru_cache(maxsize=32)
def _target_accumulator(model, per_example_loss: PerExampleLoss, mesh: Mesh):
  """``accumulate(total, variables, (x, y, w)) -> total + sum(w) * grad``,
  compiled once per model and loss; w holds 1/N for real rows, 0 for
  padding."""

  def accumulate(total, variables, rows):
    x, y, w = rows
    grad = loss_gradient(model, variables, to_float_images(x), y,
                         (w > 0).astype(jnp.float32), per_example_loss)
    return jax.tree.map(lambda t, g: t + jnp.sum(w) * g, total, grad)

  return compiler.jit(accumulate, out_shardings=sharding.replicated(mesh),
                      donate_argnums=0)


def _device_batches(mesh: Mesh, batch_size: int, *arrays: np.ndarray
                    ) -> list[tuple[jax.Array, ...]]:
  """Zero-padded batches of equal-length arrays, each split along "data"."""
  batched = [pad_to_batches(a, batch_size) for a in arrays]
  return [tuple(jax.device_put(b[i], sharding.batch_sharded(mesh))
                for b in batched) for i in range(batched[0].shape[0])]


def stacked_batch_sharding(mesh: Mesh) -> jax.sharding.NamedSharding:
  """For arrays [num_batches, B, ...]: each batch split along ``"data"``."""
  return jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))


def per_example_gradient_norms(model, variables: Any, images: np.ndarray,
                               labels: np.ndarray, *, batch_size: int,
                               mesh: Mesh | None = None) -> np.ndarray:
  """||grad_theta L(f(x_i), y_i)||_2 for every sample (UBW paper, App. B 1)).

  UBW-C and Sleeper Agent perturb the samples with the largest gradient
  norms under the surrogate, as they influence training most.

  Args:
    model: a jaxwm model.
    variables: its variables.
    images: uint8 or float [N, H, W, C].
    labels: int [N].
    batch_size: samples per compiled batch (a multiple of the devices);
      memory grows with batch_size times the parameter count.
    mesh: device mesh; default all devices.

  Returns:
    float32 [N].
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_batch_size(batch_size, mesh)
  one = jnp.ones((1,), jnp.float32)

  def local_norms(variables, images, labels):
    def example_norm(x, y):
      return tree_norm(loss_gradient(model, variables, x[None], y[None], one))

    return jax.vmap(example_norm)(to_float_images(images), labels)

  norms = compiler.jit(per_device_rows(local_norms, mesh, 1))
  values = [norms(variables, *rows) for rows in _device_batches(
      mesh, batch_size, images, np.asarray(labels, np.int32))]
  return np.concatenate(jax.device_get(values))[:images.shape[0]]


def per_device_rows(fn: Callable[..., Any], mesh: Mesh,
                    num_replicated: int) -> Callable[..., Any]:
  """Runs ``fn`` on each device's own rows with ``jax.shard_map``.

  For per-example gradients (``vmap`` of ``grad``): when jit's automatic
  partitioning splits the vmapped batch, the convolution weight gradients
  come out wrong (zeros on all devices but the first with JAX 0.10.2 on
  CPU, reproduced with a single ``conv_general_dilated``). Under
  ``shard_map`` each device maps over its own rows and no partitioning of
  the vmapped convolutions is needed. ``check_vma=False``: the gradients
  inside ``fn`` are per-device values, not sums over devices.

  Args:
    fn: ``fn(*replicated, *rows)``, returning arrays with a leading row axis.
    mesh: the device mesh.
    num_replicated: how many leading arguments are replicated; the rest
      are split along ``"data"``, as are the outputs.
  """

  def mapped(*args):
    specs = (jax.sharding.PartitionSpec(),) * num_replicated + (
        jax.sharding.PartitionSpec(sharding.DATA_AXIS),) * (
            len(args) - num_replicated)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs,
                         out_specs=jax.sharding.PartitionSpec(
                             sharding.DATA_AXIS),
                         check_vma=False)(*args)

  return mapped
