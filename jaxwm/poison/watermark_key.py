"""The owner's secret record of a dataset watermark.

A :class:`WatermarkKey` holds everything the owner needs, possibly months
after release, to verify a suspect model (UBW paper, Section 4): which
watermark was used, the exact trigger arrays, the target label (None for
untargeted watermarks such as UBW-P), the classes whose images carry the
watermark, which training images were modified, and the random key that
drew them. It is saved through :mod:`jaxwm.secure_files` (``.npz`` +
``.json`` + SHA-256 manifest), so a truncated or edited key is rejected
before it is used.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any, Sequence

import jax
import numpy as np

from jaxwm import secure_files
from jaxwm.poison import triggers

FORMAT = "jaxwm.WatermarkKey/v1"
_TRIGGER_PREFIX = "trigger_"


def _index_array(values: Any, what: str) -> np.ndarray:
  array = np.asarray(values)
  if array.size == 0:
    return np.zeros(0, np.int64)
  if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f"{what} must be a 1-D integer array, got "
                     f"{array.dtype} {array.shape}.")
  array = array.astype(np.int64)
  if array.min() < 0 or np.any(np.diff(array) <= 0):
    raise ValueError(f"{what} must be sorted, unique and non-negative.")
  return array


@dataclasses.dataclass(frozen=True, eq=False)
class WatermarkKey:
  """Everything needed to re-apply a dataset watermark and verify it.

  Attributes:
    method: the watermark's name, e.g. ``"badnets"`` or ``"ubw_p"``.
    trigger: the generator G (a :class:`~jaxwm.poison.triggers.BlendTrigger`
      or :class:`~jaxwm.poison.triggers.WarpTrigger`).
    target_label: the target class y_t of a targeted watermark, or None for
      an untargeted one (UBW).
    num_classes: K.
    source_classes: sorted classes whose images the watermark acts on;
      verification samples test images from these classes (minus the
      target).
    poisoned_indices: int64 [M], sorted indices of the modified training
      samples (the set D_s of Section 3.1).
    poison_rate: gamma = |D_s| / |D|.
    seed: uint32 array, the raw data (``jax.random.key_data``) of the
      jax.random key the watermark was drawn with.
    noise_indices: int64 [M'], sorted indices of training samples that got
      WaNet's noise-mode warp with their labels kept (empty otherwise).
  """

  method: str
  trigger: triggers.Trigger
  target_label: int | None
  num_classes: int
  source_classes: tuple[int, ...]
  poisoned_indices: np.ndarray
  poison_rate: float
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
    num_classes = int(self.num_classes)
    if num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")
    target = self.target_label
    if target is not None:
      target = int(target)
      if not 0 <= target < num_classes:
        raise ValueError(f"target_label {target} is outside [0, "
                         f"{num_classes}); pass None for untargeted marks.")
    sources = tuple(sorted({int(c) for c in self.source_classes}))
    if not sources or sources[0] < 0 or sources[-1] >= num_classes:
      raise ValueError(f"source_classes {self.source_classes} must be a "
                       f"non-empty subset of [0, {num_classes}).")
    rate = float(self.poison_rate)
    if not 0.0 <= rate <= 1.0:
      raise ValueError(f"poison_rate must be in [0, 1], got {rate}.")
    seed = np.asarray(self.seed)
    if seed.dtype != np.uint32 or seed.ndim != 1:
      raise ValueError(f"seed must be 1-D uint32 key data, got {seed.dtype} "
                       f"{seed.shape}; pass jax.random.key_data(key).")
    object.__setattr__(self, "num_classes", num_classes)
    object.__setattr__(self, "target_label", target)
    object.__setattr__(self, "source_classes", sources)
    object.__setattr__(self, "poison_rate", rate)
    object.__setattr__(self, "seed", seed)
    object.__setattr__(self, "poisoned_indices", _index_array(
        self.poisoned_indices, "poisoned_indices"))
    object.__setattr__(self, "noise_indices", _index_array(
        self.noise_indices, "noise_indices"))

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
        "poison_rate": self.poison_rate,
        "trigger": trigger_metadata,
    }
    return secure_files.save(prefix, arrays, metadata)

  @classmethod
  def load(cls, prefix: str,
           manifest_digest: str | None = None) -> "WatermarkKey":
    """Reads a key written by :meth:`save`, after checking its hashes.

    Args:
      prefix: the path given to :meth:`save`.
      manifest_digest: optional hex digest :meth:`save` returned; when given,
        the manifest file itself must match it byte for byte.

    Raises:
      TamperedFileError: a file was truncated or modified, the manifest does
        not match ``manifest_digest``, or the contents are not a valid key.
    """
    if manifest_digest is not None and not hmac.compare_digest(
        secure_files.manifest_digest(prefix).encode(),
        str(manifest_digest).encode()):
      raise secure_files.TamperedFileError(
          f"the manifest of {prefix} does not match the digest you kept; the "
          "key files were replaced or modified. Use the owner's copy.")
    arrays, metadata = secure_files.load(prefix)
    try:
      return _from_record(arrays, metadata)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      raise secure_files.TamperedFileError(
          f"{prefix} holds no valid watermark key ({e}); use the files "
          "WatermarkKey.save wrote.") from None


def _from_record(arrays: dict[str, np.ndarray],
                 metadata: dict[str, Any]) -> WatermarkKey:
  if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
    raise ValueError(f"format is not {FORMAT!r}")
  trigger_arrays = {name[len(_TRIGGER_PREFIX):]: value
                    for name, value in arrays.items()
                    if name.startswith(_TRIGGER_PREFIX)}
  target = metadata["target_label"]
  if target is not None and not isinstance(target, int):
    raise TypeError(f"target_label {target!r} is not an integer")
  return WatermarkKey(
      method=metadata["method"],
      trigger=triggers.trigger_from_record(trigger_arrays,
                                           metadata["trigger"]),
      target_label=target,
      num_classes=metadata["num_classes"],
      source_classes=tuple(_int_list(metadata["source_classes"])),
      poisoned_indices=arrays["poisoned_indices"],
      poison_rate=metadata["poison_rate"],
      seed=arrays["seed"],
      noise_indices=arrays["noise_indices"],
  )


def _int_list(values: Sequence[Any]) -> list[int]:
  if not isinstance(values, list) or not all(
      isinstance(v, int) for v in values):
    raise TypeError(f"{values!r} is not a list of integers")
  return values
