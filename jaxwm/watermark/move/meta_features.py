"""What MOVE's meta-classifier sees of a model: white-box and black-box
features of the model on transformed images.

White-box, two reductions of the per-image gradient of the model's
cross-entropy loss with respect to its weights, grad_w L(f(x; w), y),
computed with ``jax.vmap(jax.grad(...))`` in inference mode (batch-norm
running statistics):

* ``gradient_comparisons`` (jaxwm's default): for a transformed image x'
  and its benign version x, with g_l(x) = grad_{W_l} L(x) for each weight
  kernel W_l (parameters with two or more axes, in the parameters'
  flattening order), the log-ratio of the norms,
  log ||g_l(x')|| - log ||g_l(x)|| (how much harder the external feature
  pushes on the layer than the image without it), and the cosine between
  g_l(x') and g_l(x) (how differently it pushes). Norms and inner products
  do not change when a layer's hidden units are permuted, so models
  trained from different initialisations give comparable features; 2 L
  values per image (:func:`gradient_comparison_features`).
* ``gradient_signs`` (Section 5.3, Eq. 4, the paper's): the sign of the
  gradient on x', kept small the way the authors' code does it
  (:func:`reduce_gradients`): parameters with one axis (biases, batch-norm
  scales and offsets) are dropped; a convolution kernel [kh, kw, in, out]
  is max-pooled over its spatial extent to [in, out] (its largest partial
  derivative per filter pair), or dropped when in * out >
  ``pool_threshold``; a dense kernel [in, out] is kept whole when in * out
  <= ``pool_threshold`` and otherwise max-pooled over its inputs to [out].
  The sign is taken after pooling; ``pool_threshold`` = 5000 is the
  authors' value. These features follow the order of hidden units, which
  independent trainings do not share: a meta-classifier on them learns its
  training models' weights rather than the external features (see
  docs/move.md).

Black-box (Section 5.3, Eqs. 5-8): for a transformed image x' and its benign
version x, the concatenation over the paper's five augmentations T_a
(identity, horizontal flip, and translations by ``shift`` pixels towards the
bottom right, the right and the bottom; vacated pixels are black) of the
differences f(T_a(x')) - f(T_a(x)) of the model's probability vectors:
5 K values, from 2 x 5 queries per image.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.train import compiler, losses
from jaxwm.train import step as step_lib
from jaxwm.verify.dataset_ownership import PredictProba
from jaxwm.verify.dataset_ownership import query_probabilities

POOL_THRESHOLD = 5000
GRADIENT_COMPARISONS = "gradient_comparisons"
GRADIENT_SIGNS = "gradient_signs"
WHITE_BOX_FEATURES = (GRADIENT_COMPARISONS, GRADIENT_SIGNS)
# The floor of a gradient norm before its log or a division (a loss
# saturated to exactly 0 has a zero gradient): float32's smallest normal
# number.
_NORM_FLOOR = float(np.finfo(np.float32).tiny)
AUGMENTATIONS = ("identity", "horizontal_flip", "shift_down_right",
                 "shift_right", "shift_down")
QUERIES_PER_IMAGE = 2 * len(AUGMENTATIONS)


def reduce_gradient(gradient: jax.Array,
                    pool_threshold: int = POOL_THRESHOLD) -> jax.Array | None:
  """One parameter's gradient -> its part of the feature vector.

  Args:
    gradient: float [...], the gradient of one parameter (flax layouts:
      convolution kernels [kh, kw, in, out], dense kernels [in, out]).
    pool_threshold: in * out above which a kernel is pooled (dense) or
      dropped (convolution).

  Returns:
    float [n], or None where the parameter is dropped (see the module
    docstring).
  """
  if gradient.ndim <= 1:
    return None
  fan_in, fan_out = gradient.shape[-2:]
  if gradient.ndim > 2:
    if fan_in * fan_out > pool_threshold:
      return None
    return jnp.max(gradient, axis=tuple(range(gradient.ndim - 2))).ravel()
  if fan_in * fan_out > pool_threshold:
    return jnp.max(gradient, axis=0)
  return gradient.ravel()


def reduce_gradients(gradients: Any,
                     pool_threshold: int = POOL_THRESHOLD) -> jax.Array:
  """A gradient pytree -> float [D], the concatenation of
  :func:`reduce_gradient` over its leaves in flattening order."""
  parts = [reduce_gradient(g, pool_threshold)
           for g in jax.tree_util.tree_leaves(gradients)]
  parts = [p for p in parts if p is not None]
  if not parts:
    raise ValueError(
        "no parameter is left after dropping 1-D parameters and large "
        "convolution kernels; raise pool_threshold.")
  return jnp.concatenate(parts)


def compare_kernels(transformed_gradients: Any,
                    benign_gradients: Any) -> jax.Array:
  """Two gradient pytrees of one model -> float [2 L]: per leaf with two or
  more axes (the L weight kernels, in flattening order), the log-ratio of
  the first's norm to the second's, then per kernel the cosine between
  them (0 where either is zero)."""
  pairs = [(a, b) for a, b in zip(jax.tree_util.tree_leaves(
      transformed_gradients), jax.tree_util.tree_leaves(benign_gradients))
           if a.ndim >= 2]
  if not pairs:
    raise ValueError("the model has no weight kernel (no parameter with "
                     "two or more axes) to compare gradients on.")
  norms = jnp.stack([jnp.stack([jnp.linalg.norm(a), jnp.linalg.norm(b)])
                     for a, b in pairs])  # [L, 2]
  norms = jnp.maximum(norms, _NORM_FLOOR)
  # Each gradient is scaled to unit norm before the inner product: the
  # product of two floored norms would underflow to 0.
  cosines = jnp.stack([jnp.vdot(a / na, b / nb)
                       for (a, b), (na, nb) in zip(pairs, norms)])
  log_ratios = jnp.log(norms[:, 0]) - jnp.log(norms[:, 1])
  return jnp.concatenate([log_ratios, cosines])


def _per_sample_gradient(model) -> Callable[..., Any]:
  """(params, model_state, image [H, W, C], label) -> grad_w L, the
  gradient pytree of the cross-entropy loss on the one image."""

  def gradient(params, model_state, image, label):
    def loss(p):
      logits = model.apply({"params": p, **model_state}, image[None],
                           train=False)
      return losses.cross_entropy(logits, label[None])[0]
    return jax.grad(loss)(params)

  return gradient


def _batched(one: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """``one(params, model_state, *per_image)`` -> a compiled
  ``(variables, *batched) -> [B, ...]`` mapping it over the leading axis."""

  def batch(variables, *per_image):
    variables = dict(variables)
    params = variables.pop("params")
    return jax.vmap(one, in_axes=(None, None) + (0,) * len(per_image))(
        params, variables, *per_image)

  return compiler.jit(batch)


@functools.lru_cache(maxsize=16)
def _sign_gradient_fn(model, pool_threshold: int) -> Callable[..., jax.Array]:
  """(variables, images float [B, H, W, C], labels [B]) -> int8 [B, D],
  compiled once per model and threshold (flax modules hash by value)."""
  gradient = _per_sample_gradient(model)

  def one(params, model_state, image, label):
    reduced = reduce_gradients(gradient(params, model_state, image, label),
                               pool_threshold)
    return jnp.sign(reduced).astype(jnp.int8)

  return _batched(one)


@functools.lru_cache(maxsize=16)
def _comparison_fn(model) -> Callable[..., jax.Array]:
  """(variables, transformed float [B, H, W, C], benign float [B, H, W, C],
  labels [B]) -> float32 [B, 2 L], compiled once per model."""
  gradient = _per_sample_gradient(model)

  def one(params, model_state, transformed, benign, label):
    return compare_kernels(gradient(params, model_state, transformed, label),
                           gradient(params, model_state, benign, label))

  return _batched(one)


def _in_chunks(features_fn: Callable[..., jax.Array], variables: Any,
               image_sets: list[np.ndarray], labels: np.ndarray,
               batch_size: int) -> np.ndarray:
  """``features_fn(variables, *float image batches, labels)`` over the rows
  in chunks of ``batch_size`` (the last padded: one compiled shape)."""
  outputs = []
  for start in range(0, labels.shape[0], batch_size):
    chunks = [step_lib.to_float_images(jnp.asarray(images[start:start +
                                                          batch_size]))
              for images in image_sets]
    chunk_labels = labels[start:start + batch_size]
    pad = batch_size - chunk_labels.shape[0]
    if pad:
      chunks = [jnp.concatenate([c, jnp.zeros((pad, *c.shape[1:]), c.dtype)])
                for c in chunks]
      chunk_labels = np.concatenate([chunk_labels, np.zeros(pad, np.int32)])
    outputs.append(np.asarray(features_fn(variables, *chunks,
                                          chunk_labels))[:batch_size - pad])
  return np.concatenate(outputs)


def _check_images(labels: np.ndarray, images: np.ndarray) -> None:
  if images.ndim != 4 or labels.shape != images.shape[:1]:
    raise ValueError(
        f"images must be [N, H, W, C] with labels [N], got {images.shape} "
        f"and {labels.shape}.")


def _check_pairs(transformed: np.ndarray, benign: np.ndarray) -> None:
  if transformed.shape != benign.shape or transformed.ndim != 4:
    raise ValueError(
        f"transformed and benign images must be paired [N, H, W, C], got "
        f"{transformed.shape} and {benign.shape}.")


def gradient_sign_features(model, variables: Any, images: np.ndarray,
                           labels: np.ndarray, *,
                           pool_threshold: int = POOL_THRESHOLD,
                           batch_size: int = 32) -> np.ndarray:
  """White-box features (the paper's): sign(grad_w L(f(x'; w), y)),
  reduced, per image.

  Args:
    model: the (jaxwm) model f.
    variables: its variables {"params": ..., and "batch_stats" if any}.
    images: uint8 [N, H, W, C], the transformed images x'.
    labels: int [N], their labels y.
    pool_threshold: see :func:`reduce_gradient`.
    batch_size: images per compiled call (memory: batch_size copies of
      the full gradient).

  Returns:
    int8 [N, D] in {-1, 0, 1}.
  """
  images = np.asarray(images)
  labels = np.asarray(labels, np.int32)
  _check_images(labels, images)
  return _in_chunks(_sign_gradient_fn(model, int(pool_threshold)), variables,
                    [images], labels, batch_size)


def gradient_comparison_features(model, variables: Any,
                                 transformed: np.ndarray, benign: np.ndarray,
                                 labels: np.ndarray, *,
                                 batch_size: int = 32) -> np.ndarray:
  """White-box features (jaxwm's default): per weight kernel W_l,
  log ||g_l(x')|| - log ||g_l(x)|| and cos(g_l(x'), g_l(x)), with
  g_l(x) = grad_{W_l} L(f(x), y).

  Args:
    model: the (jaxwm) model f.
    variables: its variables {"params": ..., and "batch_stats" if any}.
    transformed: uint8 [N, H, W, C], the transformed images x'.
    benign: uint8 [N, H, W, C], their benign versions x.
    labels: int [N], their labels y.
    batch_size: image pairs per compiled call (memory: 2 batch_size copies
      of the full gradient).

  Returns:
    float32 [N, 2 L], L the model's weight kernels: the L log-ratios, then
    the L cosines (:func:`compare_kernels`; a norm is floored at float32's
    smallest normal number).
  """
  transformed, benign = np.asarray(transformed), np.asarray(benign)
  labels = np.asarray(labels, np.int32)
  _check_pairs(transformed, benign)
  _check_images(labels, transformed)
  return _in_chunks(_comparison_fn(model), variables, [transformed, benign],
                    labels, batch_size).astype(np.float32)


def _translate(images: np.ndarray, down: int, right: int) -> np.ndarray:
  """Images moved ``down`` and ``right`` pixels; vacated pixels are 0."""
  height, width = images.shape[1:3]
  moved = np.zeros_like(images)
  moved[:, down:, right:] = images[:, :height - down, :width - right]
  return moved


def augmented_views(images: np.ndarray, shift: int) -> list[np.ndarray]:
  """The five views T_a(x) of :data:`AUGMENTATIONS`, each [N, H, W, C]."""
  if not 0 < shift < min(images.shape[1:3]):
    raise ValueError(f"shift must be in [1, {min(images.shape[1:3])}) "
                     f"pixels for {images.shape[1:3]} images, got {shift}.")
  return [images, images[:, :, ::-1], _translate(images, shift, shift),
          _translate(images, 0, shift), _translate(images, shift, 0)]


def probability_difference_features(predict_proba: PredictProba,
                                    transformed: np.ndarray,
                                    benign: np.ndarray, num_classes: int, *,
                                    shift: int = 2) -> np.ndarray:
  """Black-box features: CAT_a [f(T_a(x')) - f(T_a(x))] (Eqs. 6-8).

  Args:
    predict_proba: the model's query interface: float images [B, H, W, C]
      in [0, 1] -> probabilities [B, K].
    transformed: uint8 [N, H, W, C], the transformed images x'.
    benign: uint8 [N, H, W, C], their benign versions x.
    num_classes: K.
    shift: the translations' length in pixels.

  Returns:
    float32 [N, 5 K]; the model is queried 10 N times
    (:data:`QUERIES_PER_IMAGE` per image), in one call.
  """
  transformed, benign = np.asarray(transformed), np.asarray(benign)
  _check_pairs(transformed, benign)
  count = transformed.shape[0]
  queries = np.concatenate(augmented_views(transformed, shift) +
                           augmented_views(benign, shift))
  probabilities = query_probabilities(predict_proba, queries, num_classes)
  views = probabilities.reshape(2, len(AUGMENTATIONS), count, num_classes)
  differences = views[0] - views[1]  # [A, N, K]
  return np.transpose(differences, (1, 0, 2)).reshape(
      count, -1).astype(np.float32)
