"""Neural Cleanse (Wang et al., IEEE S&P 2019): reverse-engineer a trigger
per class and flag the classes whose trigger is abnormally small.

For every class k, a mask m_k in [0, 1]^{H x W x 1} and a pattern p_k in
[0, 1]^{H x W x C} stamp clean images as ``x' = (1 - m_k) x + m_k p_k``;
they are optimised to send x' to class k with the smallest mask:

    min  E_x CE(f(x'), k) + lambda_k |m_k|_1,

with m = sigmoid(mask logits) and p = sigmoid(pattern logits), by Adam
(learning rate 0.1, betas 0.5 and 0.9, as Wang et al.'s code). The L1
weight lambda_k follows Wang et al.'s schedule: it starts at
``init_cost``; after ``patience`` consecutive epochs in which the epoch's
mean attack success reaches ``attack_success_threshold`` it is multiplied
by ``cost_multiplier``, after ``patience`` consecutive epochs below it
divided by ``cost_multiplier ** 1.5`` (``cost_multiplier = 1`` keeps a
fixed lambda). The kept trigger is that of the epoch with the smallest mean
mask norm among the epochs whose mean attack success reached the
threshold (the last epoch's when none did, marked in ``reached``). All
classes are optimised together (their objectives are independent), in
compiled loops of ``LOG_EVERY_EPOCHS`` epochs with a progress line after
each; Wang et al. run up to 1000 epochs with early stopping, jaxwm
a fixed ``num_epochs``.

A backdoored target class needs a much smaller mask than the others. The
anomaly index of the mask norms is their absolute deviation from the median
over the median absolute deviation (MAD) scaled by the consistency
constant 1.4826 (which makes it estimate the standard deviation of normal
data); classes below the median with an index above 2 are flagged.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxwm.defenses import image_grids
from jaxwm.defenses._model_calls import num_classes, on_one_device
from jaxwm.train.step import to_float_images

MAD_CONSISTENCY = 1.4826
# Initial masks and patterns are drawn in [_INIT_MARGIN, 1 - _INIT_MARGIN].
_INIT_MARGIN = 0.01
# Epochs per compiled call; a progress line is logged after each call.
LOG_EVERY_EPOCHS = 10


@dataclasses.dataclass(frozen=True)
class NeuralCleanseConfig:
  """Settings of Neural Cleanse (module docstring).

  Attributes:
    num_epochs: optimisation epochs.
    steps_per_epoch: Adam steps per epoch, each on a fresh random batch.
    batch_size: clean images per step (each stamped with every class's
      trigger).
    learning_rate: Adam's step size.
    init_cost: the first L1 weight lambda, > 0.
    cost_multiplier: lambda's factor up (and its power 1.5 down); 1 keeps
      lambda fixed at ``init_cost``.
    patience: epochs above (below) the threshold before lambda rises
      (falls).
    attack_success_threshold: the mean attack success an epoch must reach
      for its trigger to count.
    anomaly_threshold: classes with a larger anomaly index (and a norm
      below the median) are flagged.
  """

  num_epochs: int = 100
  steps_per_epoch: int = 32
  batch_size: int = 32
  learning_rate: float = 0.1
  init_cost: float = 1e-3
  cost_multiplier: float = 1.5
  patience: int = 5
  attack_success_threshold: float = 0.99
  anomaly_threshold: float = 2.0

  def __post_init__(self):
    for name in ("num_epochs", "steps_per_epoch", "batch_size", "patience"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if self.learning_rate <= 0 or self.init_cost <= 0:
      raise ValueError(
          f"learning_rate ({self.learning_rate}) and init_cost "
          f"({self.init_cost}) must be > 0.")
    if self.cost_multiplier < 1:
      raise ValueError(f"cost_multiplier must be >= 1 (1: a fixed lambda), "
                       f"got {self.cost_multiplier}.")
    if not 0 < self.attack_success_threshold <= 1:
      raise ValueError(f"attack_success_threshold must be in (0, 1], got "
                       f"{self.attack_success_threshold}.")


def mad_anomaly_index(values: np.ndarray) -> np.ndarray:
  """|v - median(v)| / (1.4826 * median(|v - median(v)|)).

  Args:
    values: float [K], K >= 2, finite.

  Returns:
    float64 [K], each value's anomaly index.

  Raises:
    ValueError: the MAD is 0 (half of the values or more are equal to the
      median), where the index is undefined.
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
    raise ValueError(f"values must be finite [K] with K >= 2, got shape "
                     f"{values.shape}.")
  deviation = np.abs(values - np.median(values))
  mad = MAD_CONSISTENCY * np.median(deviation)
  if mad == 0:
    raise ValueError(
        f"the median absolute deviation of {values.tolist()} is 0, so the "
        "anomaly index is undefined; at least half of the values equal "
        "their median.")
  return deviation / mad


def small_outliers(values: np.ndarray, threshold: float = 2.0) -> np.ndarray:
  """Indices of values below their median with anomaly index > threshold.

  Args:
    values: float [K], e.g. the mask norms of each class.
    threshold: the anomaly index above which a value is an outlier.

  Returns:
    int64 [F], sorted.
  """
  values = np.asarray(values, np.float64)
  index = mad_anomaly_index(values)
  return np.flatnonzero((values < np.median(values)) & (index > threshold))


def largest_small_index(values: np.ndarray) -> float:
  """The largest anomaly index among the values below their median (the
  statistic :func:`small_outliers` compares with its threshold; 0.0 when
  no value lies below the median).

  Args:
    values: float [K], e.g. the mask norms of each class.
  """
  values = np.asarray(values, np.float64)
  below = values < np.median(values)
  return float(mad_anomaly_index(values)[below].max()) if below.any() else 0.0


def _stamp(params: dict[str, jax.Array], images: jax.Array) -> jax.Array:
  """Every class's trigger on every image: [B, H, W, C] -> [K, B, H, W, C]."""
  mask = jax.nn.sigmoid(params["mask"])[:, None]
  pattern = jax.nn.sigmoid(params["pattern"])[:, None]
  return (1.0 - mask) * images[None] + mask * pattern


def _optimizer(config: NeuralCleanseConfig) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate, b1=0.5, b2=0.9)


@functools.partial(jax.jit, static_argnames=("model", "num_classes",
                                             "config"))
def _run_epochs(variables: Any, images: jax.Array, carry: Any,
                epoch_keys: jax.Array, *, model: Any, num_classes: int,
                config: NeuralCleanseConfig) -> tuple[Any, jax.Array]:
  """``len(epoch_keys)`` epochs from ``carry`` (params, optimizer state,
  cost schedule, best triggers so far); returns the new carry and each
  epoch's mean attack success [E, K]."""
  optimizer = _optimizer(config)
  targets = jnp.arange(num_classes)

  def objective(params, batch, cost):
    stamped = _stamp(params, batch).reshape((-1,) + batch.shape[1:])
    logits = model.apply(variables, stamped, train=False).reshape(
        num_classes, batch.shape[0], -1)
    cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, targets[:, None]), axis=1)
    norms = jnp.sum(jax.nn.sigmoid(params["mask"]), axis=(1, 2, 3))
    success = jnp.mean(jnp.argmax(logits, -1) == targets[:, None], axis=1)
    return jnp.sum(cross_entropy + cost * norms), (norms, success)

  def step(carry, step_key):
    params, opt_state, cost = carry
    picks = jax.random.randint(step_key, (config.batch_size,), 0,
                               images.shape[0])
    grads, (norms, success) = jax.grad(objective, has_aux=True)(
        params, images[picks], cost)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, cost), (
        norms, success)

  def epoch(carry, epoch_key):
    params, opt_state, schedule, best = carry
    (params, opt_state, _), (norms, success) = jax.lax.scan(
        step, (params, opt_state, schedule["cost"]),
        jax.random.split(epoch_key, config.steps_per_epoch))
    norm, success = jnp.mean(norms, 0), jnp.mean(success, 0)
    reached = success >= config.attack_success_threshold
    better = reached & (norm < best["norm"])
    best = {"params": _per_class_where(better, params, best["params"]),
            "norm": jnp.where(better, norm, best["norm"]),
            "success": jnp.where(better, success, best["success"])}
    return (params, opt_state, _next_cost(schedule, reached, config),
            best), success

  return jax.lax.scan(epoch, carry, epoch_keys)


def _reverse_engineer(variables: Any, images: jax.Array, key: jax.Array, *,
                      model: Any, num_classes: int,
                      config: NeuralCleanseConfig
                      ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
  """(best {"mask", "pattern"} logits, their mean attack success [K],
  whether the threshold was reached [K]). Runs ``LOG_EVERY_EPOCHS`` epochs
  per compiled call and logs the progress between calls."""
  height, width, channels = images.shape[1:]
  key_mask, key_pattern, key_batches = jax.random.split(key, 3)

  def init_logits(key, shape):
    return jax.scipy.special.logit(jax.random.uniform(
        key, shape, minval=_INIT_MARGIN, maxval=1.0 - _INIT_MARGIN))

  params = {
      "mask": init_logits(key_mask, (num_classes, height, width, 1)),
      "pattern": init_logits(key_pattern,
                             (num_classes, height, width, channels))}
  schedule = {"cost": jnp.full(num_classes, config.init_cost),
              "up": jnp.zeros(num_classes, jnp.int32),
              "down": jnp.zeros(num_classes, jnp.int32)}
  best = {"params": params, "norm": jnp.full(num_classes, jnp.inf),
          "success": jnp.zeros(num_classes)}
  carry = (params, _optimizer(config).init(params), schedule, best)
  epoch_keys = jax.random.split(key_batches, config.num_epochs)
  start = time.monotonic()
  for done in range(0, config.num_epochs, LOG_EVERY_EPOCHS):
    carry, successes = _run_epochs(
        variables, images, carry, epoch_keys[done:done + LOG_EVERY_EPOCHS],
        model=model, num_classes=num_classes, config=config)
    finished = min(done + LOG_EVERY_EPOCHS, config.num_epochs)
    with_trigger = int(jnp.sum(jnp.isfinite(carry[3]["norm"])))
    elapsed = time.monotonic() - start
    logging.info(
        "neural cleanse epoch %d/%d  classes with a trigger %d/%d  "
        "mean attack success %.3f  %.1f s/epoch  ETA %.0fs", finished,
        config.num_epochs, with_trigger, num_classes,
        float(successes[-1].mean()),
        elapsed / finished, elapsed / finished *
        (config.num_epochs - finished))
  last, best = carry[0], carry[3]
  reached = jnp.isfinite(best["norm"])
  return (_per_class_where(reached, best["params"], last),
          jnp.where(reached, best["success"], successes[-1]), reached)


def _per_class_where(condition: jax.Array, new: Any, old: Any) -> Any:
  """Leaf-wise ``new[k] if condition[k] else old[k]``; bool [K] condition,
  trees of [K, ...] arrays."""
  return jax.tree.map(
      lambda a, b: jnp.where(condition.reshape((-1,) + (1,) * (a.ndim - 1)),
                             a, b), new, old)


def _next_cost(schedule: dict[str, jax.Array], reached: jax.Array,
               config: NeuralCleanseConfig) -> dict[str, jax.Array]:
  """Wang et al.'s lambda update after an epoch, per class."""
  up = jnp.where(reached, schedule["up"] + 1, 0)
  down = jnp.where(reached, 0, schedule["down"] + 1)
  rise, fall = up >= config.patience, down >= config.patience
  cost = jnp.where(rise, schedule["cost"] * config.cost_multiplier,
                   schedule["cost"])
  cost = jnp.where(fall, cost / config.cost_multiplier**1.5, cost)
  return {"cost": cost, "up": jnp.where(rise, 0, up),
          "down": jnp.where(fall, 0, down)}


@dataclasses.dataclass(frozen=True)
class NeuralCleanseResult:
  """The reverse-engineered triggers and the anomaly analysis.

  Attributes:
    masks: float32 [K, H, W, 1] in [0, 1], one per class.
    patterns: float32 [K, H, W, C] in [0, 1].
    l1_norms: float64 [K], ``|m_k|_1``.
    attack_success: float64 [K], the kept trigger's mean attack success
      over its epoch.
    reached: bool [K], whether the class's trigger reached
      ``attack_success_threshold`` (else the last epoch's is kept).
    anomaly_index: float64 [K], :func:`mad_anomaly_index` of ``l1_norms``.
    flagged_classes: the classes flagged as backdoor targets, sorted.
    config: the settings used.
  """

  masks: np.ndarray
  patterns: np.ndarray
  l1_norms: np.ndarray
  attack_success: np.ndarray
  reached: np.ndarray
  anomaly_index: np.ndarray
  flagged_classes: tuple[int, ...]
  config: NeuralCleanseConfig

  @property
  def triggers(self) -> np.ndarray:
    """float32 [K, H, W, C], ``m_k * p_k``: what each trigger adds."""
    return self.masks * self.patterns

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results (without the images)."""
    return {**dataclasses.asdict(self.config),
            "l1_norms": self.l1_norms.tolist(),
            "attack_success": self.attack_success.tolist(),
            "reached": self.reached.tolist(),
            "anomaly_index": self.anomaly_index.tolist(),
            "max_anomaly_index": float(self.anomaly_index.max()),
            "max_small_anomaly_index": largest_small_index(self.l1_norms),
            "flagged_classes": list(self.flagged_classes)}


def neural_cleanse(model: Any, variables: Any, clean_images: np.ndarray,
                   key: jax.Array, config: NeuralCleanseConfig | None = None
                   ) -> NeuralCleanseResult:
  """Reverse-engineers a trigger per class and flags abnormal classes.

  Args:
    model: a jaxwm model with K >= 3 classes.
    variables: its variables.
    clean_images: uint8 [N, H, W, C] or float in [0, 1], clean images the
      defender holds (e.g. a test split).
    key: jax.random key; draws the initial triggers and the batches.
    config: settings; default :class:`NeuralCleanseConfig`.

  Returns:
    A :class:`NeuralCleanseResult`.
  """
  config = config or NeuralCleanseConfig()
  clean_images = np.asarray(clean_images)
  if clean_images.ndim != 4 or not clean_images.shape[0]:
    raise ValueError(f"clean_images must be images [N, H, W, C] with N >= 1, "
                     f"got shape {clean_images.shape}.")
  classes = num_classes(model, variables, clean_images.shape[1:])
  if classes < 3:
    raise ValueError(f"the model has {classes} classes; Neural Cleanse's "
                     "median-based anomaly index needs at least 3.")
  params, success, reached = _reverse_engineer(
      *on_one_device((variables, to_float_images(jnp.asarray(clean_images)),
                      key)), model=model, num_classes=classes,
      config=config)
  masks = np.asarray(jax.nn.sigmoid(params["mask"]))
  norms = masks.sum(axis=(1, 2, 3), dtype=np.float64)
  return NeuralCleanseResult(
      masks=masks, patterns=np.asarray(jax.nn.sigmoid(params["pattern"])),
      l1_norms=norms, attack_success=np.asarray(success, np.float64),
      reached=np.asarray(reached), anomaly_index=mad_anomaly_index(norms),
      flagged_classes=tuple(int(k) for k in small_outliers(
          norms, config.anomaly_threshold)),
      config=config)


def save_trigger_grid(path: str, result: NeuralCleanseResult,
                      class_names: tuple[str, ...] | None = None) -> None:
  """Writes each class's synthesized trigger ``m_k * p_k`` as a PNG grid.

  Each tile is titled with the class, its mask norm and anomaly index
  (flagged classes marked with ``*``), as the UBW paper's Figure 10.

  Args:
    path: the PNG file to write.
    result: a :func:`neural_cleanse` result.
    class_names: K names; default the class indices.
  """
  names = class_names or tuple(str(k) for k in range(len(result.l1_norms)))
  titles = [
      f"{'*' if k in result.flagged_classes else ''}{name}\n"
      f"L1 {norm:.1f}, a {index:.1f}"
      for k, (name, norm, index) in enumerate(
          zip(names, result.l1_norms, result.anomaly_index))]
  image_grids.save_image_grid(path, result.triggers, titles)
