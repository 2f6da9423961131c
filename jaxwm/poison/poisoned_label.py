"""Poisoned-label dataset watermarks: BadNets, Blended, WaNet and UBW-P.

Each watermark selects a subset D_s of the training set (``poison_rate``
gamma = |D_s| / |D|), applies a trigger G to its images and changes their
labels (UBW paper, Section 3.1):

* targeted (BadNets, Blended, WaNet): every poisoned label becomes the
  target label y_t (0 by default);
* untargeted UBW-P (Section 3.3): every poisoned label is drawn uniformly
  from [0, K), independently per sample; the trigger is the BadNets patch
  unless ``trigger`` names another.

WaNet runs in its noise mode by default (Appendix C.1): another
``wanet_noise_ratio * gamma`` of the samples get a randomly perturbed warp
and keep their labels, so the model learns the exact field, not any warp.

Triggers are applied to the stored uint8 images (rounded back to uint8), so
they precede any augmentation, as in the paper (Appendix C.1).

Clean-label watermarks (Label-Consistent, UBW-C, Sleeper Agent) reuse the
same pieces: :func:`jaxwm.data.splits.select_indices` on their own
candidate pool, :func:`build_trigger`, and a
:class:`~jaxwm.poison.watermark_key.WatermarkKey` with their method name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.data.splits import select_indices
from jaxwm.poison import triggers
from jaxwm.poison.watermark_key import WatermarkKey

TARGETED_METHODS = ("badnets", "blended", "wanet")
UNTARGETED_METHODS = ("ubw_p",)
METHODS = TARGETED_METHODS + UNTARGETED_METHODS
TRIGGERS = ("badnets", "blended", "wanet")
LABEL_DRAWS = ("independent", "balanced")
ConfigT = TypeVar("ConfigT")


@dataclasses.dataclass(frozen=True)
class PoisonedLabelConfig:
  """Settings of a poisoned-label watermark (defaults follow Appendix C.1).

  Attributes:
    method: one of :data:`METHODS`.
    poison_rate: gamma, the share of the dataset that is poisoned, in (0, 1).
    target_label: y_t for the targeted methods; ignored by ``ubw_p``.
    source_classes: classes whose samples may be poisoned; None for all.
    trigger: the generator for ``ubw_p`` (default ``"badnets"``); for the
      targeted methods None or the method's own name.
    patch_size: BadNets patch side; None scales 3 px at 32x32 with the image.
    patch_position: (row, col) of the patch; None for the bottom-right.
    patch_pattern: ``"checkerboard"`` or ``"white"``.
    blend_alpha: the Blended ratio alpha.
    wanet_k: WaNet control points per side.
    wanet_s: WaNet warping strength.
    wanet_noise: whether WaNet uses its noise mode.
    wanet_noise_ratio: noise-mode samples per poisoned sample.
    label_draw: how ``ubw_p`` draws the random labels y' ~ U[0, K) (Section
      3.3): ``"independent"`` draws each one on its own; ``"balanced"``
      gives each source class's poisoned samples every label equally often
      (counts differ by at most one), in random order, so each y' is still
      uniform but no class gets more random labels than another by chance
      (see :func:`random_labels`).
  """

  method: str = "badnets"
  poison_rate: float = 0.1
  target_label: int = 0
  source_classes: tuple[int, ...] | None = None
  trigger: str | None = None
  patch_size: int | None = None
  patch_position: tuple[int, int] | None = None
  patch_pattern: str = "checkerboard"
  blend_alpha: float = 0.1
  wanet_k: int = 4
  wanet_s: float = 0.5
  wanet_noise: bool = True
  wanet_noise_ratio: float = 2.0
  label_draw: str = "independent"

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(
          f"unknown poisoned-label method {self.method!r}; use one of "
          f"{METHODS} (clean-label watermarks have their own mark function).")
    if not 0.0 < float(self.poison_rate) < 1.0:
      raise ValueError(
          f"poison_rate must be in (0, 1), got {self.poison_rate}.")
    if self.trigger is not None and (
        self.trigger not in TRIGGERS or
        (self.method in TARGETED_METHODS and self.trigger != self.method)):
      raise ValueError(
          f"trigger {self.trigger!r} does not fit method {self.method!r}; "
          f"leave it None or, for ubw_p, pick one of {TRIGGERS}.")
    if self.label_draw not in LABEL_DRAWS:
      raise ValueError(
          f"unknown label_draw {self.label_draw!r}; use one of "
          f"{LABEL_DRAWS}.")
    if float(self.wanet_noise_ratio) < 0:
      raise ValueError(
          f"wanet_noise_ratio must be >= 0, got {self.wanet_noise_ratio}.")

  @property
  def trigger_name(self) -> str:
    """The generator this config uses."""
    if self.method in TARGETED_METHODS:
      return self.method
    return self.trigger or "badnets"

  @property
  def targeted(self) -> bool:
    return self.method in TARGETED_METHODS


def dataclass_config(cls: type[ConfigT], config: Any) -> ConfigT:
  """A ``cls`` instance from itself, an ml_collections.ConfigDict or a dict.

  Args:
    cls: a frozen config dataclass such as :class:`PoisonedLabelConfig`.
    config: an instance of ``cls``, or a mapping of its fields (tuples may
      arrive as lists).

  Raises:
    ValueError: a field name is unknown (the message lists the valid ones).
  """
  if isinstance(config, cls):
    return config
  values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ValueError(
        f"unknown watermark config fields {unknown}; valid fields are "
        f"{sorted(names)}.")
  for name in ("source_classes", "patch_position"):
    if values.get(name) is not None:
      values[name] = tuple(values[name])
  return cls(**values)


def as_config(config: Any) -> PoisonedLabelConfig:
  """A PoisonedLabelConfig from itself, an ml_collections.ConfigDict or a dict.

  Raises:
    ValueError: a field name is unknown (the message lists the valid ones).
  """
  return dataclass_config(PoisonedLabelConfig, config)


def build_trigger(config: PoisonedLabelConfig, image_shape: tuple[int, ...],
                  key: jax.Array) -> triggers.Trigger:
  """The trigger G that ``config`` names, for images of ``image_shape``."""
  name = config.trigger_name
  if name == "badnets":
    return triggers.badnets_trigger(image_shape, size=config.patch_size,
                                    position=config.patch_position,
                                    pattern=config.patch_pattern)
  if name == "blended":
    return triggers.blended_trigger(key, image_shape, alpha=config.blend_alpha)
  return triggers.wanet_trigger(key, image_shape, k=config.wanet_k,
                                s=config.wanet_s)


def watermark_trigger(config: Any, image_shape: tuple[int, ...],
                      key: jax.Array) -> triggers.Trigger:
  """The trigger G that :func:`mark` draws for ``config`` with ``key``.

  Args:
    config: a :class:`PoisonedLabelConfig` or a mapping of its fields.
    image_shape: (H, W, C) of the images.
    key: the jax.random key :func:`mark` is given.
  """
  config = as_config(config)
  return build_trigger(config, image_shape, _split_key(key)[2])


def _split_key(key: jax.Array) -> jax.Array:
  """Keys of the samples, the labels, the trigger, WaNet's noise samples
  and WaNet's noise, in this order."""
  return jax.random.split(key, 5)


def random_labels(key: jax.Array, true_labels: np.ndarray, num_classes: int,
                  draw: str = "independent") -> np.ndarray:
  """UBW-P's poisoned labels y' ~ U[0, K) (Section 3.3).

  Args:
    key: jax.random key.
    true_labels: int [M], the ground-truth labels of the poisoned samples.
    num_classes: K.
    draw: ``"independent"``: M independent uniform draws. ``"balanced"``:
      within each group of samples sharing a true label, the labels
      0..K-1 repeated to the group's size (the remainder from a random
      permutation of the classes), then shuffled; every y' is still uniform
      on [0, K), and each class receives floor(n/K) or ceil(n/K) of a
      group of n.

  Returns:
    int32 [M] in [0, K).
  """
  true_labels = np.asarray(true_labels)
  if draw == "independent":
    return np.asarray(jax.random.randint(key, true_labels.shape, 0,
                                         num_classes), np.int32)
  if draw != "balanced":
    raise ValueError(f"unknown label draw {draw!r}; use one of "
                     f"{LABEL_DRAWS}.")
  labels = np.zeros(true_labels.shape, np.int32)
  for label in np.unique(true_labels):
    group = np.flatnonzero(true_labels == label)
    key_order, key_shuffle = jax.random.split(
        jax.random.fold_in(key, int(label)))
    order = np.asarray(jax.random.permutation(key_order, num_classes))
    labels[group] = np.asarray(jax.random.permutation(
        key_shuffle, order[np.arange(group.size) % num_classes]))
  return labels


def _source_classes(config: PoisonedLabelConfig,
                    num_classes: int) -> tuple[int, ...]:
  if config.source_classes is None:
    return tuple(range(num_classes))
  sources = tuple(sorted({int(c) for c in config.source_classes}))
  if not sources or sources[0] < 0 or sources[-1] >= num_classes:
    raise ValueError(
        f"source_classes {config.source_classes} must be a non-empty subset "
        f"of [0, {num_classes}).")
  return sources


def mark(dataset: Dataset, config: Any,
         key: jax.Array) -> tuple[Dataset, WatermarkKey]:
  """Watermarks ``dataset`` with a poisoned-label backdoor (Section 3.1, 3.3).

  Args:
    dataset: the benign training set D.
    config: a :class:`PoisonedLabelConfig`, ``ml_collections.ConfigDict`` or
      dict with its fields.
    key: jax.random key; it alone decides the poisoned samples, the random
      labels and the random parts of the trigger.

  Returns:
    (the released dataset D_p, the owner's secret WatermarkKey).
  """
  config = as_config(config)
  num_samples = len(dataset)
  num_classes = dataset.num_classes
  target = int(config.target_label) if config.targeted else None
  if target is not None and not 0 <= target < num_classes:
    raise ValueError(
        f"target_label {target} is outside [0, {num_classes}); pick a class "
        "of this dataset.")
  sources = _source_classes(config, num_classes)
  (key_select, key_labels, key_trigger, key_noise_select,
   key_noise) = _split_key(key)
  trigger = build_trigger(config, dataset.image_shape, key_trigger)

  candidates = np.flatnonzero(np.isin(dataset.labels, sources))
  count = int(round(config.poison_rate * num_samples))
  if count == 0:
    raise ValueError(
        f"poison_rate {config.poison_rate} of {num_samples} samples rounds to "
        "no poisoned sample; raise the rate or use a larger dataset.")
  poisoned = select_indices(candidates, count, key_select)
  images = dataset.images.copy()
  labels = dataset.labels.copy()
  images[poisoned] = triggers.apply_uint8(trigger, images[poisoned])
  if target is None:
    labels[poisoned] = random_labels(key_labels, labels[poisoned],
                                     num_classes, config.label_draw)
  else:
    labels[poisoned] = target

  noise = np.zeros(0, np.int64)
  if config.trigger_name == "wanet" and config.wanet_noise:
    rest = np.setdiff1d(np.arange(num_samples), poisoned, assume_unique=True)
    noise = select_indices(
        rest, int(round(config.wanet_noise_ratio * count)), key_noise_select)
    images[noise] = triggers.apply_uint8(
        lambda x: trigger.with_noise(x, key_noise), images[noise])

  watermark_key = WatermarkKey(
      method=config.method, trigger=trigger, target_label=target,
      num_classes=num_classes, source_classes=sources,
      poisoned_indices=poisoned, num_samples=num_samples,
      seed=np.asarray(jax.random.key_data(key), np.uint32),
      noise_indices=noise)
  return dataset.replace(images=images, labels=labels), watermark_key
