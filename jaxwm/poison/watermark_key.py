"""The owner's secret record of a dataset watermark.

A :class:`WatermarkKey` holds everything the owner needs, possibly months
after release, to verify a suspect model (UBW paper, Section 4): which
watermark was used, the exact trigger arrays, the target label (None for
untargeted watermarks such as UBW-P), the classes whose images carry the
watermark, which training images were modified, and the random key that
drew them. It is saved through :mod:`jaxwm.secure_files` (``.npz`` +
``.json`` + SHA-256 manifest), so a truncated or edited key is rejected
before it is used, and on loading its metadata is checked against its
arrays. The digest :meth:`WatermarkKey.save` returns, kept by the owner and
passed to :meth:`WatermarkKey.load`, also refuses a key forged together with
a fresh manifest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxwm import fields
from jaxwm import secure_files
from jaxwm.poison import triggers

FORMAT = "jaxwm.WatermarkKey/v2"
_TRIGGER_PREFIX = "trigger_"


@dataclasses.dataclass(frozen=True, eq=False)
class WatermarkKey:
  """Everything needed to re-apply a dataset watermark and verify it.

  Attributes:
    method: the watermark's name, e.g. ``"badnets"`` or ``"ubw_p"``.
    trigger: the generator G (a :class:`~jaxwm.poison.triggers.BlendTrigger`
      or :class:`~jaxwm.poison.triggers.WarpTrigger`).
    target_label: the target class y_t of a targeted watermark, or None for
      an untargeted one (UBW).
    num_classes: K >= 2.
    source_classes: sorted classes whose images the watermark acts on;
      verification samples test images from these classes (minus the
      target).
    poisoned_indices: int64 [M], sorted indices of the modified training
      samples (the set D_s of Section 3.1).
    num_samples: N = |D|, the size of the training set the indices refer to.
    seed: uint32 array, the raw data (``jax.random.key_data``) of the
      jax.random key the watermark was drawn with.
    noise_indices: int64 [M'], sorted indices of training samples that got
      WaNet's noise-mode warp with their labels kept (empty otherwise),
      disjoint from ``poisoned_indices``.

  Every integer field must be an integer (not a bool or a float) in range;
  a violation raises ValueError naming the field and the value.
  """

  method: str
  trigger: triggers.Trigger
  target_label: int | None
  num_classes: int
  source_classes: tuple[int, ...]
  poisoned_indices: np.ndarray
  num_samples: int
  seed: np.ndarray
  noise_indices: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.int64))

  def __post_init__(self):
    if not isinstance(self.method, str) or not self.method:
      raise ValueError(f"method must be a non-empty string, got "
                       f"{self.method!r}.")
    if not isinstance(self.trigger, (triggers.BlendTrigger,
                                     triggers.WarpTrigger)):
      raise TypeError(f"trigger must be a BlendTrigger or WarpTrigger, got "
                      f"{type(self.trigger).__name__}.")
    num_classes = fields.integer(self.num_classes, "num_classes", low=2)
    target = self.target_label
    if target is not None:
      target = fields.integer(target, "target_label (None for untargeted "
                              "marks)", 0, num_classes)
    sources = fields.integers(self.source_classes, "source_classes", 0,
                              num_classes)
    if not sources:
      raise ValueError(f"source_classes must be a non-empty subset of [0, "
                       f"{num_classes}), got {self.source_classes!r}.")
    num_samples = fields.integer(self.num_samples, "num_samples", low=1)
    poisoned = fields.index_array(self.poisoned_indices, "poisoned_indices",
                                  num_samples)
    noise = fields.index_array(self.noise_indices, "noise_indices",
                               num_samples)
    both = np.intersect1d(poisoned, noise)
    if both.size:
      raise ValueError(f"noise_indices and poisoned_indices share index "
                       f"{both[0]}; a sample is either poisoned or noised.")
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "target_label", target)
    object.__setattr__(self, "source_classes", tuple(sorted(set(sources))))
    object.__setattr__(self, "num_samples", num_samples)
    object.__setattr__(self, "poisoned_indices", poisoned)
    object.__setattr__(self, "noise_indices", noise)
    object.__setattr__(self, "seed", fields.key_data(self.seed))

  @property
  def poison_rate(self) -> float:
    """gamma = |D_s| / |D|."""
    return self.poisoned_indices.size / self.num_samples

  @property
  def targeted(self) -> bool:
    """True when the watermark has a target label."""
    return self.target_label is not None

  def rng_key(self) -> jax.Array:
    """The jax.random key the watermark was drawn with."""
    return jax.random.wrap_key_data(self.seed)

  def apply_trigger(self, images: jax.Array) -> jax.Array:
    """G(x): float [B, H, W, C] in [0, 1] -> triggered float [B, H, W, C]."""
    triggers.check_trigger_fits(self.trigger, images.shape[1:])
    return self.trigger(images)

  def apply_trigger_uint8(self, images: np.ndarray) -> np.ndarray:
    """G(x) on stored uint8 [B, H, W, C] images, rounded back to uint8.

    Exactly what :func:`~jaxwm.poison.poisoned_label.mark` stores for the
    poisoned training images, and what verification queries.
    """
    triggers.check_trigger_fits(self.trigger, np.shape(images)[1:])
    return triggers.apply_uint8(self.trigger, images)

  def save(self, prefix: str) -> str:
    """Writes PREFIX.npz, PREFIX.json and PREFIX.manifest.json.

    Returns:
      The manifest's SHA-256 hex digest; keep it apart from the files and
      pass it to :meth:`load` to pin all three files.
    """
    trigger_arrays, trigger_metadata = triggers.trigger_to_record(self.trigger)
    arrays = {_TRIGGER_PREFIX + name: value
              for name, value in trigger_arrays.items()}
    arrays.update(poisoned_indices=self.poisoned_indices,
                  noise_indices=self.noise_indices, seed=self.seed)
    metadata = {
        "format": FORMAT,
        "method": self.method,
        "target_label": self.target_label,
        "num_classes": self.num_classes,
        "source_classes": list(self.source_classes),
        "num_samples": self.num_samples,
        "trigger": trigger_metadata,
    }
    return secure_files.save(prefix, arrays, metadata)

  @classmethod
  def load(cls, prefix: str, digest: str | None = None) -> "WatermarkKey":
    """Reads a key written by :meth:`save`, after checking its hashes.

    The metadata is then checked against the arrays: the trigger's settings
    against its stored pattern and mask
    (:func:`~jaxwm.poison.triggers.trigger_from_record`), labels and indices
    for being integers in range.

    Args:
      prefix: the path given to :meth:`save`.
      digest: the hex digest :meth:`save` returned. Pass it: without it a
        forger who rewrites the manifest along with the key (e.g. to change
        the target label to another valid class) goes undetected.

    Raises:
      TamperedFileError: a file was truncated, modified or renamed, the
        manifest does not match ``digest``, or a field is invalid (the
        message names it and its value).
    """
    arrays, metadata = secure_files.load(prefix, digest)
    try:
      return _from_record(arrays, metadata)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      raise secure_files.TamperedFileError(
          f"{prefix} holds no valid watermark key ({_describe(e)}); use the "
          "files WatermarkKey.save wrote.") from None


def _describe(error: Exception) -> str:
  """A KeyError as the missing entry; other errors as their message."""
  if isinstance(error, KeyError):
    return f"the entry {error} is missing"
  return str(error)


def _from_record(arrays: dict[str, np.ndarray],
                 metadata: dict[str, Any]) -> WatermarkKey:
  if metadata.get("format") != FORMAT:
    raise ValueError(f"format {metadata.get('format')!r} is not {FORMAT!r}")
  trigger_arrays = {name[len(_TRIGGER_PREFIX):]: value
                    for name, value in arrays.items()
                    if name.startswith(_TRIGGER_PREFIX)}
  source_classes = metadata["source_classes"]
  if not isinstance(source_classes, list):
    raise TypeError(f"source_classes must be a list, got {source_classes!r}")
  return WatermarkKey(
      method=metadata["method"],
      trigger=triggers.trigger_from_record(trigger_arrays,
                                           metadata["trigger"]),
      target_label=metadata["target_label"],
      num_classes=metadata["num_classes"],
      source_classes=tuple(source_classes),
      poisoned_indices=arrays["poisoned_indices"],
      num_samples=metadata["num_samples"],
      seed=arrays["seed"],
      noise_indices=arrays["noise_indices"],
  )
