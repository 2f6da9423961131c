"""Dataset Inference's feature embedding: a sample's distance to the
decision boundary towards each class (Dataset Inference paper, Section 5,
"embedding generation"; the distance of the MOVE paper's Section 2.2).

White-box, MinGD: for a sample x and every target class t, gradient
steps on a perturbation delta (sign steps for L-inf, normalised steps for
L2, top-k coordinate steps for L1) raise the target's logit over the
largest one, max_j f(x + delta)_j - f(x + delta)_t, until the model
predicts t; the feature is ||delta||_p, one per (class, norm). The model's
own class has distance 0.

Black-box, Blind Walk: for a sample x with label y and each of several
random directions u (uniform for L-inf, Gaussian for L2, Laplace for L1),
the walk x + k u, k = 1, 2, ..., stops at the first k whose predicted
label differs from y; the feature is ||clip(x + k u) - x||_p (the
walk's last point where the label never changes). Only predicted labels
are used.

Both run as one compiled loop over a batch of (sample, class) or
(sample, direction) pairs, stopping once every pair has crossed; images
are clipped to [0, 1] throughout.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxwm.alignment.objective import per_device_rows
from jaxwm.train import compiler
from jaxwm.train import sharding
from jaxwm.train import step as step_lib

NORMS = ("linf", "l2", "l1")


@dataclasses.dataclass(frozen=True)
class MinGDConfig:
  """MinGD's settings (defaults: the authors' code's, for [0, 1] images).

  Attributes:
    num_steps: the most gradient steps per (sample, target).
    step_linf: the L-inf step (every pixel moves by it).
    step_l2: the L2 length of a step.
    step_l1: the L1 length of a step, spread over ``l1_coordinates``
      pixels.
    l1_coordinates: k, the pixels of largest gradient an L1 step moves
      (at most the image's size).
    l1_gap: pixels within this of 0 or 1 do not move further towards it.
  """

  num_steps: int = 500
  step_linf: float = 0.001
  step_l2: float = 0.01
  step_l1: float = 1.0
  l1_coordinates: int = 100
  l1_gap: float = 0.001

  def step(self, norm: str) -> float:
    return {"linf": self.step_linf, "l2": self.step_l2,
            "l1": self.step_l1}[norm]


@dataclasses.dataclass(frozen=True)
class BlindWalkConfig:
  """Blind Walk's settings (defaults: the authors' code's).

  Attributes:
    num_steps: the most steps of a walk.
    num_directions: random directions per sample and norm.
    uniform_linf: L-inf directions are uniform in [-u, u] per pixel.
    gaussian_l2: L2 directions are Gaussian with this deviation.
    laplace_l1: L1 directions are Laplace with this scale.
  """

  num_steps: int = 50
  num_directions: int = 10
  uniform_linf: float = 0.005
  gaussian_l2: float = 0.005
  laplace_l1: float = 0.01


def norm_of(delta: jax.Array, norm: str) -> jax.Array:
  """float [B] ||delta_b||_p of float [B, ...], p one of :data:`NORMS`."""
  flat = delta.reshape(delta.shape[0], -1)
  if norm == "linf":
    return jnp.max(jnp.abs(flat), axis=-1)
  if norm == "l2":
    return jnp.sqrt(jnp.sum(flat * flat, axis=-1))
  return jnp.sum(jnp.abs(flat), axis=-1)


def check_norms(norms: tuple[str, ...]) -> tuple[str, ...]:
  """``norms`` as a tuple, checked against :data:`NORMS`."""
  norms = tuple(norms)
  unknown = [n for n in norms if n not in NORMS]
  if not norms or unknown:
    raise ValueError(f"norms {norms!r} must be a non-empty subset of "
                     f"{NORMS}.")
  return norms


def _l1_direction(gradient: jax.Array, current: jax.Array, gap: float,
                  coordinates: int) -> jax.Array:
  """Unit steps of sign(g) on the k pixels of largest |g| that can still
  move that way, float [B, ...] (the authors' top-k L1 direction)."""
  blocked = (((gradient < 0) & (current <= gap)) |
             ((gradient > 0) & (current >= 1 - gap)))
  flat = jnp.where(blocked, 0.0, gradient).reshape(gradient.shape[0], -1)
  kth = jax.lax.top_k(jnp.abs(flat), coordinates)[0][:, -1:]
  hot = (jnp.abs(flat) >= kth) & (flat != 0)
  return (hot * jnp.sign(flat)).reshape(gradient.shape)


def _direction(norm: str, gradient: jax.Array, current: jax.Array,
               config: MinGDConfig, coordinates: int) -> jax.Array:
  """A step of length ``config.step(norm)`` along ``gradient`` [B, ...]."""
  if norm == "linf":
    return config.step_linf * jnp.sign(gradient)
  if norm == "l2":
    length = norm_of(gradient, "l2") + 1e-12
    return config.step_l2 * gradient / length.reshape(
        (-1,) + (1,) * (gradient.ndim - 1))
  return (config.step_l1 / coordinates) * _l1_direction(
      gradient, current, config.l1_gap, coordinates)


@functools.lru_cache(maxsize=16)
def _mingd_fn(model, norm: str, config: MinGDConfig, coordinates: int,
              mesh):
  """(variables, images float [B, H, W, C], targets int [B]) ->
  (distances float [B], reached bool [B], perturbations float
  [B, H, W, C]), compiled once per model, settings and mesh (flax modules
  hash by value). Each device walks its own rows (``shard_map``) until
  they have all crossed: no collective in the loop."""

  def run(variables, images, targets):
    def margin(delta):
      logits = model.apply(variables, images + delta, train=False)
      target = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
      return jnp.sum(jnp.max(logits, axis=-1) - target), logits

    def active_of(logits, active):
      return active & (jnp.argmax(logits, axis=-1) != targets)

    def body(carry):
      step, delta, active = carry
      (_, logits), gradient = jax.value_and_grad(margin, has_aux=True)(
          delta)
      active = active_of(logits, active)
      moved = _direction(norm, -gradient, images + delta, config,
                         coordinates)
      moved = jnp.clip(images + delta + moved, 0.0, 1.0) - images
      mask = active.reshape((-1,) + (1,) * (images.ndim - 1))
      return step + 1, jnp.where(mask, moved, delta), active

    def cond(carry):
      step, _, active = carry
      return (step < config.num_steps) & jnp.any(active)

    start = (0, jnp.zeros_like(images),
             jnp.ones(images.shape[:1], bool))
    _, delta, _ = jax.lax.while_loop(cond, body, start)
    logits = model.apply(variables, images + delta, train=False)
    return (norm_of(delta, norm), jnp.argmax(logits, axis=-1) == targets,
            delta)

  return compiler.jit(per_device_rows(run, mesh, 1))


@functools.lru_cache(maxsize=16)
def _blind_walk_fn(model, norm: str, config: BlindWalkConfig, mesh):
  """(variables, images float [B, H, W, C], labels int [B], key) ->
  distances float [B], compiled once per model, settings and mesh; each
  device walks its own rows, as in :func:`_mingd_fn`."""

  def noise(key, shape):
    if norm == "linf":
      return jax.random.uniform(key, shape, minval=-config.uniform_linf,
                                maxval=config.uniform_linf)
    if norm == "l2":
      return config.gaussian_l2 * jax.random.normal(key, shape)
    return config.laplace_l1 * jax.random.laplace(key, shape)

  def walk(variables, images, labels, direction):
    def delta_at(k):
      return jnp.clip(images + k * direction, 0.0, 1.0) - images

    def body(carry):
      k, done, distance = carry
      delta = delta_at(k)
      logits = model.apply(variables, images + delta, train=False)
      crossed = ~done & (jnp.argmax(logits, axis=-1) != labels)
      distance = jnp.where(crossed, norm_of(delta, norm), distance)
      return k + 1.0, done | crossed, distance

    def cond(carry):
      k, done, _ = carry
      return (k <= config.num_steps) & ~jnp.all(done)

    last = norm_of(delta_at(float(config.num_steps)), norm)
    start = (1.0, jnp.zeros(images.shape[:1], bool), last)
    return jax.lax.while_loop(cond, body, start)[2]

  def run(variables, images, labels, key):
    return per_device_rows(walk, mesh, 1)(variables, images, labels,
                                          noise(key, images.shape))

  return compiler.jit(run)


def _batched(call, arrays: tuple[jax.Array, ...], batch_size: int, mesh
             ) -> tuple[np.ndarray, ...]:
  """``call(chunk_index, *chunks)`` over rows of ``arrays`` (each [B, ...])
  in chunks of ``batch_size`` (a multiple of the mesh's devices), split
  over the mesh, the last padded with its first row (one compiled shape
  for every chunk); its outputs [batch_size] trimmed and concatenated
  into NumPy arrays [B]."""
  count = arrays[0].shape[0]
  rows = sharding.batch_sharded(mesh)
  outputs = []
  for index, start in enumerate(range(0, count, batch_size)):
    size = min(batch_size, count - start)
    chunks = []
    for array in arrays:
      chunk = array[start:start + size]
      if size < batch_size:
        chunk = jnp.concatenate(
            [chunk, jnp.repeat(chunk[:1], batch_size - size, axis=0)])
      chunks.append(jax.device_put(chunk, rows))
    out = call(index, *chunks)
    outputs.append([np.asarray(o)[:size] for o in (
        out if isinstance(out, tuple) else (out,))])
  return tuple(np.concatenate(column) for column in zip(*outputs))


def _placed(variables: Any, batch_size: int, rows: int, mesh
            ) -> tuple[Any, int, Any]:
  """(variables replicated over the mesh, the batch size rounded up to a
  multiple of its devices, the mesh); ``mesh`` None: all devices."""
  mesh = sharding.make_mesh() if mesh is None else mesh
  devices = mesh.devices.size
  batch_size = -(-min(batch_size, rows) // devices) * devices
  return sharding.replicate(variables, mesh), batch_size, mesh


def _float_images(images: np.ndarray) -> jax.Array:
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape "
                     f"{images.shape}.")
  return step_lib.to_float_images(images)


def mingd_distances(model, variables: Any, images: np.ndarray,
                    num_classes: int, *, config: MinGDConfig = MinGDConfig(),
                    norms: tuple[str, ...] = NORMS, batch_size: int = 512,
                    mesh: Mesh | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """White-box features: MinGD's distance to every class, in each norm.

  Args:
    model: the flax module f (called as ``model.apply(variables, x,
      train=False)`` on float images in [0, 1]).
    variables: its variables.
    images: uint8 or float [N, H, W, C].
    num_classes: K.
    config: the steps.
    norms: the norms, a subset of :data:`NORMS`.
    batch_size: (sample, class) pairs per compiled call (rounded up to a
      multiple of the mesh's devices).
    mesh: the devices that share the pairs; None: all.

  Returns:
    (distances float32 [N, K, P], reached bool [N, K, P]): P = len(norms);
    reached says whether the walk ended in class k (false: it ran out of
    steps, and the distance is where it stopped).
  """
  norms = check_norms(norms)
  images = _float_images(images)
  n = images.shape[0]
  pairs = jnp.repeat(images, num_classes, axis=0)
  targets = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), n)
  coordinates = min(config.l1_coordinates, int(np.prod(images.shape[1:])))
  variables, batch_size, mesh = _placed(variables, batch_size,
                                        pairs.shape[0], mesh)
  distances, reached = [], []
  for norm in norms:
    run = _mingd_fn(model, norm, config, coordinates, mesh)
    norm_distances, norm_reached, _ = _batched(
        lambda _, x, t, run=run: run(variables, x, t), (pairs, targets),
        batch_size, mesh)
    distances.append(norm_distances)
    reached.append(norm_reached)
  shape = (n, num_classes, len(norms))
  return (np.stack(distances, -1).reshape(shape),
          np.stack(reached, -1).reshape(shape))


def mingd_perturbation(model, variables: Any, images: np.ndarray,
                       targets: np.ndarray, norm: str, *,
                       config: MinGDConfig = MinGDConfig(),
                       batch_size: int = 512, mesh: Mesh | None = None
                       ) -> np.ndarray:
  """MinGD's perturbations themselves, for one norm (what
  :func:`mingd_distances` measures).

  Args:
    model, variables, config, batch_size, mesh: as :func:`mingd_distances`.
    images: uint8 or float [N, H, W, C].
    targets: int [N], each sample's target class.
    norm: one of :data:`NORMS`.

  Returns:
    float32 [N, H, W, C], delta with x + delta in [0, 1].
  """
  (norm,) = check_norms((norm,))
  images = _float_images(images)
  targets = jnp.asarray(targets, jnp.int32)
  coordinates = min(config.l1_coordinates, int(np.prod(images.shape[1:])))
  variables, batch_size, mesh = _placed(variables, batch_size,
                                        images.shape[0], mesh)
  run = _mingd_fn(model, norm, config, coordinates, mesh)
  return _batched(lambda _, x, t: run(variables, x, t), (images, targets),
                  batch_size, mesh)[2]


def blind_walk_distances(model, variables: Any, images: np.ndarray,
                         labels: np.ndarray, key: jax.Array, *,
                         config: BlindWalkConfig = BlindWalkConfig(),
                         norms: tuple[str, ...] = NORMS,
                         batch_size: int = 512,
                         mesh: Mesh | None = None) -> np.ndarray:
  """Black-box features: Blind Walk's distance along random directions.

  Args:
    model: the flax module f; only its predicted labels are used.
    variables: its variables.
    images: uint8 or float [N, H, W, C].
    labels: int [N], the samples' true labels y.
    key: jax.random key of the directions.
    config: the walk.
    norms: the norms, a subset of :data:`NORMS`.
    batch_size: (sample, direction) pairs per compiled call (rounded up
      to a multiple of the mesh's devices).
    mesh: the devices that share the pairs; None: all.

  Returns:
    float32 [N, D, P]: D = config.num_directions, P = len(norms).
  """
  norms = check_norms(norms)
  images = _float_images(images)
  labels = jnp.asarray(labels, jnp.int32)
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels must be [N] = {images.shape[:1]}, got "
                     f"{labels.shape}.")
  n, count = images.shape[0], config.num_directions
  pairs = jnp.repeat(images, count, axis=0)
  pair_labels = jnp.repeat(labels, count)
  variables, batch_size, mesh = _placed(variables, batch_size,
                                        pairs.shape[0], mesh)
  distances = []
  for index, norm in enumerate(norms):
    run = _blind_walk_fn(model, norm, config, mesh)
    norm_key = jax.random.fold_in(key, index)
    distances.append(_batched(
        lambda chunk, x, y, run=run, norm_key=norm_key: run(
            variables, x, y, jax.random.fold_in(norm_key, chunk)),
        (pairs, pair_labels), batch_size, mesh)[0])
  return np.stack(distances, -1).reshape(n, count, len(norms))
