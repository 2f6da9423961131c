"""Entangled Watermarks (EWE; Jia, Choquette-Choo, Chandrasekaran and
Papernot, USENIX Security 2021): a backdoor watermark whose triggered
samples share the hidden representation of the target class, so that a
model extracted from the victim's predictions inherits it.

The owner (Section 4 of the paper):

1. trains a model on its data without the watermark;
2. builds the watermarked samples from images of a source class: a
   square patch, set to the brightest value, where the gradient of the
   soft nearest neighbour loss (SNNL, :func:`snnl`) with respect to the
   input is largest (:func:`trigger_position`), labelled the target class;
3. trains on, alternating clean batches and watermark batches (half
   watermarked samples, half target-class samples, all labelled the
   target), and on the watermark batches maximises the SNNL between the
   two halves' representations, so that they entangle
   (:func:`embed`).

Verification (:func:`verify`) queries the suspect with triggered
source-class test images the owner kept out of training and compares its
watermark success (the share classified as the target) with that of a
model trained without the watermark, by a one-sided t-test: here paired,
the clean model answering the same queries, H1: the suspect's success is
higher.

What jaxwm leaves out of the reference implementation: the temperature
is fixed (the reference also descends it), the triggered samples are not
perturbed further after the patch is set, and the SNNL is taken on the
layers named by ``layers`` of the engine's sown activations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.models import common as model_common
from jaxwm.steal import finetune
from jaxwm.train import loop, losses, recipe
from jaxwm.train import step as step_lib
from jaxwm.verify.ttest import PairedTTestResult, paired_ttest

EUCLIDEAN = "euclidean"
COSINE = "cosine"
METRICS = (EUCLIDEAN, COSINE)


@dataclasses.dataclass(frozen=True)
class EntangledConfig:
  """EWE's settings (config block ``entangled``).

  Attributes:
    source_class: the class whose images carry the trigger.
    target_class: the class the triggered images are labelled (!= source).
    patch_size: side of the square patch, in pixels.
    factor: weight of the SNNL in the watermark batches' loss
      (``CE - factor * sum of SNNLs``; the reference's default 32).
    temperature: T of :func:`snnl`, > 0.
    metric: ``"cosine"`` (the reference's default) or ``"euclidean"``
      (squared).
    layers: names of the sown activations the SNNL is taken on.
    clean_per_watermark_batch: r, clean batches per watermark batch: each
      step is a watermark batch with probability 1 / (1 + r).
    num_epochs: epochs of the watermarking phase.
    learning_rate: its constant learning rate.
    m: triggered test images queried in verification.
    alpha: significance level.
  """

  source_class: int = 1
  target_class: int = 7
  patch_size: int = 3
  factor: float = 32.0
  temperature: float = 1.0
  metric: str = COSINE
  layers: tuple[str, ...] = (model_common.FEATURES,)
  clean_per_watermark_batch: float = 1.0
  num_epochs: int = 10
  learning_rate: float = 0.01
  m: int = 100
  alpha: float = 0.01

  def __post_init__(self):
    if self.source_class == self.target_class:
      raise ValueError(
          f"source_class and target_class must differ, both are "
          f"{self.source_class}; pick another target class.")
    if self.metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, got "
                       f"{self.metric!r}.")
    for name in ("temperature", "learning_rate", "patch_size", "m"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
    if not self.clean_per_watermark_batch >= 0:
      raise ValueError("clean_per_watermark_batch must be >= 0, got "
                       f"{self.clean_per_watermark_batch}.")
    if not 0 < self.alpha < 1:
      raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}.")

  @classmethod
  def from_dict(cls, block: Mapping[str, Any]) -> "EntangledConfig":
    block = dict(block)
    if "layers" in block:
      block["layers"] = tuple(block["layers"])
    return cls(**block)

  def check_classes(self, num_classes: int) -> None:
    """Raises ValueError unless both classes lie in [0, num_classes)."""
    for name in ("source_class", "target_class"):
      if not 0 <= getattr(self, name) < num_classes:
        raise ValueError(
            f"{name} = {getattr(self, name)} is not a class of the data "
            f"(0..{num_classes - 1}); pick one in that range.")


def _pairwise_distances(x: jax.Array, metric: str) -> jax.Array:
  """float [B, D] -> float [B, B]: squared Euclidean or cosine distances."""
  if metric == COSINE:
    norms = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)
    unit = x / norms
    return 1.0 - unit @ unit.T
  squares = jnp.sum(x * x, axis=-1)
  return jnp.maximum(
      squares[:, None] + squares[None, :] - 2.0 * (x @ x.T), 0.0)


def snnl(x: jax.Array, labels: jax.Array, temperature: float,
         metric: str = COSINE) -> jax.Array:
  """Soft nearest neighbour loss (Section 3 of the paper, its Eq. 1):

      l_sn = -1/b sum_i log( sum_{j != i, y_j = y_i} exp(-d_ij / T)
                             / sum_{k != i} exp(-d_ik / T) ),

  computed as a difference of two log-sum-exps, so it stays finite for
  points as far apart as float32 allows. Rows with no other row of their
  label have no term and are left out of the mean.

  Args:
    x: float [B, ...], the representations (flattened to [B, D]).
    labels: int [B], here 1 for watermarked rows and 0 for target-class
      rows.
    temperature: T > 0.
    metric: ``"cosine"`` or ``"euclidean"`` (squared) for d_ij.

  Returns:
    The scalar loss (high: the labels' representations are entangled).
  """
  x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
  logits = -_pairwise_distances(x, metric) / temperature
  others = ~jnp.eye(x.shape[0], dtype=bool)
  same = (labels[:, None] == labels[None, :]) & others
  has_same = jnp.any(same, axis=1)
  # A row without a same-label partner gets a dummy term, masked below.
  same = same | (~has_same[:, None] & others)
  log_same = jax.nn.logsumexp(jnp.where(same, logits, -jnp.inf), axis=1)
  log_all = jax.nn.logsumexp(jnp.where(others, logits, -jnp.inf), axis=1)
  terms = jnp.where(has_same, log_all - log_same, 0.0)
  return jnp.sum(terms) / jnp.maximum(jnp.sum(has_same), 1)


def _layer_snnl(activations: Mapping[str, jax.Array], labels: jax.Array,
                config: EntangledConfig) -> jax.Array:
  """Sum of :func:`snnl` over ``config.layers``."""
  return sum(snnl(activations[name], labels, config.temperature,
                  config.metric) for name in config.layers)


def snnl_input_gradient(model: recipe.TrainedModel, triggers: np.ndarray,
                        targets: np.ndarray,
                        config: EntangledConfig) -> np.ndarray:
  """Gradient of the SNNL of [triggers; targets] w.r.t. the triggers.

  Args:
    model: the model trained without the watermark.
    triggers: uint8 [n, H, W, C], source-class images (SNNL label 1).
    targets: uint8 [n', H, W, C], target-class images (label 0).
    config: the SNNL's settings.

  Returns:
    float32 [n, H, W, C].
  """
  images = step_lib.to_float_images(
      jnp.concatenate([jnp.asarray(triggers), jnp.asarray(targets)]))
  labels = jnp.arange(images.shape[0]) < len(triggers)

  def objective(inputs):
    _, activations, _ = model_common.apply_with_features(
        model.model, model.variables, inputs, train=False)
    return _layer_snnl(activations, labels.astype(jnp.int32), config)

  return np.asarray(jax.grad(objective)(images)[:len(triggers)])


def trigger_position(gradient: np.ndarray, patch_size: int
                     ) -> tuple[int, int]:
  """(row, column) of the top-left corner of the ``patch_size`` square
  whose summed mean input gradient is largest.

  Args:
    gradient: float [n, H, W, C] (:func:`snnl_input_gradient`).
    patch_size: side of the square, <= H and W.
  """
  height, width = gradient.shape[1:3]
  if patch_size > min(height, width):
    raise ValueError(f"patch_size {patch_size} exceeds the images' "
                     f"{height}x{width}; use a smaller patch.")
  mean = gradient.mean(axis=(0, 3), dtype=np.float64)
  windows = np.lib.stride_tricks.sliding_window_view(
      mean, (patch_size, patch_size)).sum(axis=(2, 3))
  row, column = np.unravel_index(np.argmax(windows), windows.shape)
  return int(row), int(column)


def stamp(images: np.ndarray, position: tuple[int, int],
          patch_size: int) -> np.ndarray:
  """uint8 [N, H, W, C] with the square at ``position`` set to 255."""
  row, column = position
  stamped = np.array(images, np.uint8, copy=True)
  stamped[:, row:row + patch_size, column:column + patch_size, :] = 255
  return stamped


@dataclasses.dataclass(frozen=True)
class EntangledKey:
  """The owner's secret: where the patch goes and which classes.

  Attributes:
    position: (row, column) of the patch's top-left corner.
    patch_size: its side.
    source_class, target_class: as in :class:`EntangledConfig`.
  """

  position: tuple[int, int]
  patch_size: int
  source_class: int
  target_class: int

  def triggered(self, data: Dataset) -> np.ndarray:
    """uint8 [n, H, W, C]: ``data``'s source-class images, stamped."""
    images = data.images[np.asarray(data.labels) == self.source_class]
    return stamp(images, self.position, self.patch_size)


def _class_images(data: Dataset, label: int) -> np.ndarray:
  images = data.images[np.asarray(data.labels) == label]
  if not len(images):
    raise ValueError(f"the data hold no image of class {label}; pick a "
                     "class present in the owner's data.")
  return images


def make_key(model: recipe.TrainedModel, data: Dataset,
             config: EntangledConfig, max_images: int = 128
             ) -> EntangledKey:
  """Places the patch where the SNNL's input gradient is largest, on up
  to ``max_images`` source- and target-class images of ``data``."""
  config.check_classes(data.num_classes)
  sources = _class_images(data, config.source_class)[:max_images]
  targets = _class_images(data, config.target_class)[:max_images]
  gradient = snnl_input_gradient(model, sources, targets, config)
  return EntangledKey(trigger_position(gradient, config.patch_size),
                      config.patch_size, config.source_class,
                      config.target_class)


def ewe_loss(config: EntangledConfig) -> losses.LossFn:
  """The engine's loss: cross-entropy, minus ``factor`` times the SNNL on
  the watermark batches (Section 4; :func:`watermark_batch_fn` marks
  them with ``"snnl_weight"`` 1 and labels their rows ``"snnl_label"``).
  """

  def loss_fn(logits, batch, activations):
    entangle = _layer_snnl(activations, batch["snnl_label"], config)
    return (losses.cross_entropy_loss(logits, batch, activations) -
            config.factor * jnp.max(batch["snnl_weight"]) * entangle)

  return loss_fn


def watermark_batch_fn(key: EntangledKey, triggers: np.ndarray,
                       targets: np.ndarray, config: EntangledConfig,
                       augment: step_lib.InputTransform) -> loop.BatchFn:
  """The engine's ``batch_fn``: a clean, augmented batch, or, with
  probability 1 / (1 + r), a watermark batch.

  Args:
    key: the owner's key (its target class labels the watermark batch).
    triggers: uint8 [n, H, W, C], the stamped source-class images.
    targets: uint8 [n', H, W, C], target-class images.
    config: ``clean_per_watermark_batch`` is r.
    augment: the clean batches' augmentation (the watermark batches are
      seen as verification queries them, unaugmented).

  Returns:
    ``batch_fn({"image": uint8 [B, H, W, C], "label": int [B]}, key)`` ->
    float images [B, H, W, C], ``"label"`` int [B], ``"snnl_label"`` int
    [B] (1 on the first B // 2 rows of a watermark batch) and
    ``"snnl_weight"`` float [B] (all 1 in a watermark batch, else 0).
  """
  triggers, targets = jnp.asarray(triggers), jnp.asarray(targets)
  rate = 1.0 / (1.0 + config.clean_per_watermark_batch)

  def batch_fn(batch, rng):
    size = batch["image"].shape[0]
    half = size // 2
    draw_trigger, draw_target, coin, shift = jax.random.split(rng, 4)
    rows = jnp.concatenate([
        triggers[jax.random.randint(draw_trigger, (half,), 0,
                                    len(triggers))],
        targets[jax.random.randint(draw_target, (size - half,), 0,
                                   len(targets))]])
    is_watermark = jax.random.bernoulli(coin, rate)
    clean = augment(step_lib.to_float_images(batch["image"]), shift)
    column = (size,) + (1,) * (clean.ndim - 1)
    flag = jnp.full((size,), is_watermark)
    return {
        "image": jnp.where(flag.reshape(column),
                           step_lib.to_float_images(rows), clean),
        "label": jnp.where(flag, key.target_class, batch["label"]),
        "snnl_label": (flag & (jnp.arange(size) < half)).astype(jnp.int32),
        "snnl_weight": flag.astype(jnp.float32)}

  return batch_fn


def _unchanged(images: jax.Array, rng: jax.Array) -> jax.Array:
  """The step's input transform: the batch function augmented already."""
  del rng
  return images


def embed(config, data: Dataset, base: recipe.TrainedModel,
          ewe: EntangledConfig, *, workdir: str | None = None,
          stream: int = 0) -> tuple[recipe.TrainedModel, EntangledKey]:
  """Watermarks ``base`` (trained on ``data`` without the watermark).

  Args:
    config: a config with the fields of ``configs/train.py``; its
      optimizer, batch size and augmentation are kept, with a constant
      ``ewe.learning_rate`` for ``ewe.num_epochs``.
    data: the owner's training set.
    base: the model trained on ``data`` without the watermark.
    ewe: the settings.
    workdir: checkpoint folder of the watermarked model.
    stream: the engine's key stream.

  Returns:
    (the watermarked model, the key).
  """
  key = make_key(base, data, ewe)
  phase = finetune.finetune_config(config, learning_rate=ewe.learning_rate,
                                   num_epochs=ewe.num_epochs)
  batch_fn = watermark_batch_fn(
      key, key.triggered(data), _class_images(data, ewe.target_class), ewe,
      recipe.input_transform_from_config(config.train.augment))
  model = recipe.train_model(
      phase, data, workdir=workdir, stream=stream, loss_fn=ewe_loss(ewe),
      init_variables=base.variables, input_transform=_unchanged,
      batch_fn=batch_fn)
  return model, key


def watermark_success(predict: Any, images: np.ndarray,
                      target_class: int) -> np.ndarray:
  """float [n] in {0, 1}: whether ``predict`` (images -> int labels [n])
  gives each image the target class."""
  return (np.asarray(predict(images)) == target_class).astype(np.float64)


def query_images(key: EntangledKey, test: Dataset, m: int,
                 seed: int = 0) -> np.ndarray:
  """uint8 [min(m, n), H, W, C]: a seeded draw of the triggered
  source-class test images."""
  triggered = key.triggered(test)
  if not len(triggered):
    raise ValueError(f"the test set holds no image of the source class "
                     f"{key.source_class}; verification needs some.")
  order = np.random.default_rng(seed).permutation(len(triggered))
  return triggered[order[:m]]


def verify(suspect_predict: Any, clean_predict: Any, key: EntangledKey,
           queries: np.ndarray) -> PairedTTestResult:
  """The one-sided t-test of the suspect's watermark success against a
  clean model's on the same triggered queries (margin 0): H0: the
  suspect's success is at most the clean model's.

  Args:
    suspect_predict, clean_predict: images uint8 [m, H, W, C] -> int [m].
    key: the owner's key.
    queries: uint8 [m, H, W, C] (:func:`query_images`).

  Returns:
    The test; ``delta_p`` is the difference of the success rates.
  """
  return paired_ttest(
      watermark_success(suspect_predict, queries, key.target_class),
      watermark_success(clean_predict, queries, key.target_class), tau=0.0)


def trigger_counts(key: EntangledKey, data: Dataset) -> Sequence[int]:
  """(source-class images stamped, target-class images) of ``data``."""
  labels = np.asarray(data.labels)
  return (int(np.sum(labels == key.source_class)),
          int(np.sum(labels == key.target_class)))
