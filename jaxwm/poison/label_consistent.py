"""The Label-Consistent clean-label dataset watermark.

The label-consistent attack (Turner et al., the UBW paper's clean-label
targeted baseline, Section 5.1 and Appendix C.1) poisons only samples of the
target class y_t and keeps their labels, so the released dataset shows no
wrong label. To make the model rely on the trigger rather than on the
samples' own features, each selected image is first pushed away from its
class by projected gradient descent (PGD, Madry et al.) on a surrogate
model, inside the l_inf ball of radius epsilon, and then stamped with the
trigger:

    x_adv = PGD(x; eps = 16/255, step 1.5/255, 30 steps),  x' = G(x_adv).

With the paper's poisoning rate gamma = 0.1 and ten balanced classes this
poisons every target-class sample. The surrogate is any model trained on
the benign data by the training engine (``jaxwm.train``); the PGD is one
jit-compiled function per batch shape, its steps a ``lax.fori_loop``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxwm.data.dataset import Dataset
from jaxwm.data.splits import select_indices
from jaxwm.poison import poisoned_label
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey

METHOD = "label_consistent"
# (variables, images float [B, H, W, C] in [0, 1], labels int [B]) ->
# adversarial images float [B, H, W, C].
PGDFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class LabelConsistentConfig:
  """Settings of the Label-Consistent watermark (defaults: Appendix C.1).

  Attributes:
    poison_rate: gamma = |D_s| / |D|; at most the target class's share.
    target_label: y_t, the class whose samples are poisoned.
    epsilon: l_inf radius of the PGD perturbation, in [0, 1] units.
    step_size: PGD step size, in [0, 1] units.
    steps: PGD iterations.
    batch_size: images per PGD call (one compiled shape).
    patch_size: BadNets patch side; None scales 3 px at 32x32 with the image.
    patch_position: (row, col) of the patch; None for the bottom-right.
    patch_pattern: ``"checkerboard"`` or ``"white"``.
  """

  poison_rate: float = 0.1
  target_label: int = 0
  epsilon: float = 16 / 255
  step_size: float = 1.5 / 255
  steps: int = 30
  batch_size: int = 256
  patch_size: int | None = None
  patch_position: tuple[int, int] | None = None
  patch_pattern: str = "checkerboard"

  def __post_init__(self):
    if not 0.0 < float(self.poison_rate) < 1.0:
      raise ValueError(
          f"poison_rate must be in (0, 1), got {self.poison_rate}.")
    for name in ("epsilon", "step_size"):
      value = float(getattr(self, name))
      if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name} must be in [0, 1] (float image units; 16/255 for the "
            f"paper's 16), got {value}.")
    if int(self.steps) < 0 or int(self.batch_size) < 1:
      raise ValueError(f"steps must be >= 0 and batch_size >= 1, got "
                       f"{self.steps} and {self.batch_size}.")


@functools.lru_cache(maxsize=8)
def make_pgd(model, epsilon: float, step_size: float, steps: int) -> PGDFn:
  """The jit-compiled untargeted l_inf PGD attack on ``model``.

  Each step ascends the cross-entropy of the true label,

      x <- clip(x0 + clip(x + step_size * sign(grad_x CE(f(x), y)) - x0,
                          -epsilon, epsilon), 0, 1),

  from x = x0 (no random start), with the model in inference mode (batch
  statistics frozen). Cached: the same (hashable) model and settings give
  the same compiled function, so marking twice with one surrogate compiles
  once.

  Args:
    model: a jaxwm model (float images in [0, 1] -> logits).
    epsilon: l_inf radius in [0, 1] units.
    step_size: step in [0, 1] units.
    steps: number of steps.

  Returns:
    ``pgd(variables, images float [B, H, W, C], labels int [B])`` ->
    float [B, H, W, C] within ``epsilon`` of ``images`` and in [0, 1].
  """

  def loss(images, variables, labels):
    logits = model.apply(variables, images, train=False)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels))

  grad = jax.grad(loss)

  @jax.jit
  def pgd(variables, images, labels):
    def step(_, adversarial):
      ascended = adversarial + step_size * jnp.sign(
          grad(adversarial, variables, labels))
      return jnp.clip(images + jnp.clip(ascended - images, -epsilon, epsilon),
                      0.0, 1.0)

    return jax.lax.fori_loop(0, steps, step, images)

  return pgd


def perturb(pgd: PGDFn, variables: Any, images: np.ndarray,
            labels: np.ndarray, batch_size: int) -> np.ndarray:
  """Runs ``pgd`` over stored images in fixed-size batches.

  Args:
    pgd: from :func:`make_pgd`.
    variables: the surrogate's variables.
    images: uint8 [M, H, W, C].
    labels: int [M].
    batch_size: images per call; the last batch is padded.

  Returns:
    float32 [M, H, W, C] in [0, 1].
  """
  outputs = []
  for start in range(0, images.shape[0], batch_size):
    chunk = images[start:start + batch_size]
    chunk_labels = labels[start:start + batch_size]
    pad = batch_size - chunk.shape[0]
    chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:],
                                            chunk.dtype)])
    chunk_labels = np.concatenate([chunk_labels, np.zeros(pad, np.int32)])
    adversarial = pgd(variables, jnp.asarray(chunk, jnp.float32) / 255.0,
                      jnp.asarray(chunk_labels, jnp.int32))
    outputs.append(np.asarray(adversarial)[:batch_size - pad])
  if not outputs:
    return np.zeros(images.shape, np.float32)
  return np.concatenate(outputs)


def watermark_trigger(config: Any,
                      image_shape: tuple[int, ...]) -> triggers.Trigger:
  """The patch :func:`mark` stamps for ``config`` (no randomness in it).

  Args:
    config: a :class:`LabelConsistentConfig` or a mapping of its fields.
    image_shape: (H, W, C) of the images.
  """
  config = poisoned_label.dataclass_config(LabelConsistentConfig, config)
  return triggers.badnets_trigger(
      image_shape, size=config.patch_size, position=config.patch_position,
      pattern=config.patch_pattern)


def mark(dataset: Dataset, config: Any, key: jax.Array, surrogate_model,
         surrogate_variables: Any) -> tuple[Dataset, WatermarkKey]:
  """Watermarks ``dataset`` with the Label-Consistent backdoor.

  Selects ``round(poison_rate * N)`` target-class samples uniformly, replaces
  each image x by ``G(PGD(x))`` (rounded to uint8) and keeps every label.

  Args:
    dataset: the benign training set D.
    config: a :class:`LabelConsistentConfig`, ``ml_collections.ConfigDict``
      or dict with its fields.
    key: jax.random key; it decides the poisoned samples.
    surrogate_model: the jaxwm model the PGD attacks (e.g. the engine's
      ``TrainedModel.model``), trained on benign data of the same task.
    surrogate_variables: its variables (``TrainedModel.variables``).

  Returns:
    (the released dataset D_p, the owner's secret WatermarkKey); the key's
    source classes are all classes, since the trigger acts on any image.
  """
  config = poisoned_label.dataclass_config(LabelConsistentConfig, config)
  num_samples, num_classes = len(dataset), dataset.num_classes
  target = int(config.target_label)
  if not 0 <= target < num_classes:
    raise ValueError(
        f"target_label {target} is outside [0, {num_classes}); pick a class "
        "of this dataset.")
  candidates = np.flatnonzero(dataset.labels == target)
  count = int(round(config.poison_rate * num_samples))
  if not 0 < count <= candidates.size:
    raise ValueError(
        f"poison_rate {config.poison_rate} asks for {count} poisoned samples "
        f"but the label-consistent watermark can only poison the "
        f"{candidates.size} samples of the target class {target}; use a "
        f"rate in (0, {candidates.size / num_samples:.4f}].")
  poisoned = select_indices(candidates, count, key)
  trigger = watermark_trigger(config, dataset.image_shape)
  pgd = make_pgd(surrogate_model, float(config.epsilon),
                 float(config.step_size), int(config.steps))
  adversarial = perturb(pgd, surrogate_variables, dataset.images[poisoned],
                        dataset.labels[poisoned], int(config.batch_size))
  images = dataset.images.copy()
  images[poisoned] = np.asarray(triggers.to_uint8(trigger(adversarial)))
  watermark_key = WatermarkKey(
      method=METHOD, trigger=trigger, target_label=target,
      num_classes=num_classes, source_classes=tuple(range(num_classes)),
      poisoned_indices=poisoned, num_samples=num_samples,
      seed=np.asarray(jax.random.key_data(key), np.uint32))
  return dataset.replace(images=images), watermark_key
