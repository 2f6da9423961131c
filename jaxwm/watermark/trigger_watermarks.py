"""Content, noise and unrelated trigger-set watermarks (Zhang et al., 2018).

The three backdoor watermarks of "Protecting Intellectual Property of Deep
Neural Networks with Watermarking" (AsiaCCS 2018), against which watermark
removal with limited data (WILD) is evaluated. Each is a trigger set
labelled with one target class, embedded by training on it alongside the
task data:

* content: a text logo (default "TEST", white on a black patch, in a
  3x5-pixel font) stamped on training images of other classes,
  ``G(x) = (1 - m) x + m t`` with the binary patch mask ``m``;
* noise: a fixed Gaussian pattern added to training images of other
  classes, ``G(x) = clip(x + n, 0, 1)``, ``n ~ N(0, std^2)`` per pixel;
* unrelated: images of another dataset (scikit-learn digits resized to
  28x28 for Fashion-MNIST, :func:`digits_like`), unchanged.

The key (:class:`TriggerWatermarkKey`) holds the trigger set and the
pattern, saved as arrays with a SHA-256 manifest (:mod:`jaxwm.secure_files`),
so that the watermark is measured months later on bit-identical images.
Randomness (which images are stamped, the noise) comes from a 32-byte seed,
fresh from :mod:`secrets` unless a test passes one. :func:`embed` trains the
watermark in through the engine (the trigger images mixed into every batch,
as Mark does, :mod:`jaxwm.watermark.embedding`) and
:func:`watermark_accuracy` measures it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from jaxwm import data as jaxwm_data
from jaxwm.data.dataset import Dataset
from jaxwm.poison import triggers as trigger_lib
from jaxwm.steal import finetune
from jaxwm.train import recipe
from jaxwm.watermark import embedding
from jaxwm.watermark import key_files
from jaxwm.watermark.hash_draws import HashStream, seed_bytes

CONTENT = "content"
NOISE = "noise"
UNRELATED = "unrelated"
KINDS = (CONTENT, NOISE, UNRELATED)
# The pattern arrays each kind of watermark keeps in its key.
PATTERN_ARRAYS = {CONTENT: ("pattern", "alpha"), NOISE: ("noise",),
                  UNRELATED: ()}
KEY_KIND = "jaxwm/trigger-watermark/key/v1"
DEFAULT_SIZE = 100
DEFAULT_TEXT = "TEST"
# Standard deviation of the noise pattern, in units of the [0, 1] pixel range.
DEFAULT_NOISE_STD = 0.3
# Trigger rows that :func:`embed` puts into every training batch.
DEFAULT_TRIGGERS_PER_BATCH = 8

# A 3x5-pixel font: five rows of three pixels per glyph ("#" = on).
_FONT = {
    "A": ".#./#.#/###/#.#/#.#", "B": "##./#.#/##./#.#/##.",
    "C": ".##/#../#../#../.##", "D": "##./#.#/#.#/#.#/##.",
    "E": "###/#../##./#../###", "F": "###/#../##./#../#..",
    "G": ".##/#../#.#/#.#/.##", "H": "#.#/#.#/###/#.#/#.#",
    "I": "###/.#./.#./.#./###", "J": "..#/..#/..#/#.#/.#.",
    "K": "#.#/#.#/##./#.#/#.#", "L": "#../#../#../#../###",
    "M": "#.#/###/###/#.#/#.#", "N": "##./#.#/#.#/#.#/#.#",
    "O": ".#./#.#/#.#/#.#/.#.", "P": "##./#.#/##./#../#..",
    "Q": ".#./#.#/#.#/##./.##", "R": "##./#.#/##./#.#/#.#",
    "S": ".##/#../.#./..#/##.", "T": "###/.#./.#./.#./.#.",
    "U": "#.#/#.#/#.#/#.#/###", "V": "#.#/#.#/#.#/#.#/.#.",
    "W": "#.#/#.#/###/###/#.#", "X": "#.#/#.#/.#./#.#/#.#",
    "Y": "#.#/#.#/.#./.#./.#.", "Z": "###/..#/.#./#../###",
    " ": ".../.../.../.../...",
}


def text_bitmap(text: str, scale: int = 1) -> np.ndarray:
  """``text`` in the 3x5 font, one blank column between glyphs.

  Args:
    text: letters A-Z and spaces (case-insensitive).
    scale: each font pixel becomes ``scale`` x ``scale`` image pixels.

  Returns:
    float32 [5 * scale, (4 * len(text) - 1) * scale], 1 on the glyphs.
  """
  text = str(text).upper()
  unknown = sorted(set(text) - set(_FONT))
  if not text or unknown:
    raise ValueError(
        f"text {text!r} must be non-empty and use only letters A-Z and "
        f"spaces; {unknown} are not in the font.")
  if int(scale) < 1:
    raise ValueError(f"scale must be an integer >= 1, got {scale}.")
  blank = np.zeros((5, 1), np.float32)
  columns = []
  for index, char in enumerate(text):
    if index:
      columns.append(blank)
    columns.append(np.array([[c == "#" for c in row]
                             for row in _FONT[char].split("/")], np.float32))
  bitmap = np.concatenate(columns, axis=1)
  return np.kron(bitmap, np.ones((int(scale), int(scale)), np.float32))


def _check_image(name: str, array: np.ndarray,
                 image_shape: tuple[int, int, int]) -> np.ndarray:
  array = np.asarray(array, np.float32)
  if array.shape != image_shape or not np.all(np.isfinite(array)):
    raise ValueError(
        f"{name} must be finite float32 {list(image_shape)} (the image "
        f"shape), got shape {list(array.shape)}.")
  return array


@dataclasses.dataclass(frozen=True, eq=False)
class TriggerWatermarkKey(key_files.SavedKey):
  """The owner's secret: a trigger set with its target label and pattern.

  Attributes:
    kind: ``"content"``, ``"noise"`` or ``"unrelated"``.
    target: the target label every trigger carries.
    triggers: uint8 images [n, H, W, C], int32 labels [n] all ``target``,
      and the model's number of classes K.
    patterns: the arrays that make a trigger of a new image
      (:data:`PATTERN_ARRAYS`): content ``"pattern"`` and ``"alpha"``,
      float32 [H, W, C] in [0, 1]; noise ``"noise"``, float32 [H, W, C];
      unrelated none.
    params: the settings it was made with (text, noise std, ...), JSON.
  """

  kind: str
  target: int
  triggers: Dataset
  patterns: Mapping[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  KIND = KEY_KIND

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}.")
    if not isinstance(self.triggers, Dataset):
      raise TypeError(f"triggers must be a jaxwm Dataset, got "
                      f"{type(self.triggers).__name__}.")
    target = int(self.target)
    if not 0 <= target < self.triggers.num_classes or np.any(
        self.triggers.labels != target):
      raise ValueError(
          f"every trigger must be labelled with the target {self.target}, a "
          f"class in [0, {self.triggers.num_classes}); got labels "
          f"{np.unique(self.triggers.labels).tolist()}.")
    expected = PATTERN_ARRAYS[self.kind]
    if set(self.patterns) != set(expected):
      raise ValueError(
          f"a {self.kind} watermark keeps the patterns {list(expected)}, got "
          f"{sorted(self.patterns)}.")
    patterns = {name: _check_image(name, self.patterns[name],
                                   self.triggers.image_shape)
                for name in expected}
    object.__setattr__(self, "target", target)
    object.__setattr__(self, "patterns", patterns)
    object.__setattr__(self, "params", dict(self.params))

  def __len__(self) -> int:
    return len(self.triggers)

  def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + "images": self.triggers.images,
            prefix + "labels": self.triggers.labels,
            **{prefix + name: value for name, value in self.patterns.items()}}

  def to_metadata(self) -> dict[str, Any]:
    return {"watermark": self.kind, "target": self.target,
            "num_classes": self.triggers.num_classes, "params": self.params}

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], path: str,
                  prefix: str = "") -> TriggerWatermarkKey:
    get = key_files.getter(arrays, path, prefix)
    kind = key_files.entry(metadata, "watermark", path)
    num_classes = key_files.int_entry(metadata, "num_classes", path)
    target = key_files.int_entry(metadata, "target", path)
    params = key_files.entry(metadata, "params", path)
    return key_files.construct(path, lambda: cls(
        kind, target,
        Dataset(get("images"), get("labels"), num_classes,
                name=f"{kind}_watermark"),
        {name: get(name) for name in PATTERN_ARRAYS.get(kind, ())},
        params))


def _apply_patterns(kind: str, patterns: Mapping[str, np.ndarray],
                    images: np.ndarray) -> np.ndarray:
  """uint8 [B, H, W, C] -> uint8 images with the ``kind`` pattern on them."""
  if kind == CONTENT:
    def generator(x):
      return trigger_lib.blend(x, patterns["pattern"], patterns["alpha"])
  else:
    def generator(x):
      return jnp.clip(x + patterns["noise"], 0.0, 1.0)
  return trigger_lib.apply_uint8(generator, images)


def stamp(key: TriggerWatermarkKey, images: np.ndarray) -> np.ndarray:
  """Puts the key's pattern on new images (content and noise only).

  Args:
    key: a content or noise watermark key.
    images: uint8 [B, H, W, C] at the key's image shape.

  Returns:
    uint8 [B, H, W, C]: content ``(1 - alpha) x + alpha pattern``, noise
    ``clip(x + noise, 0, 1)``, rounded to 0..255.
  """
  if key.kind == UNRELATED:
    raise ValueError(
        "an unrelated watermark has no pattern to stamp: its triggers are "
        "other images; use key.triggers.")
  if tuple(np.shape(images)[1:]) != key.triggers.image_shape:
    raise ValueError(
        f"images have shape {list(np.shape(images)[1:])} but the key's "
        f"pattern {list(key.triggers.image_shape)}; pass images of the "
        "watermarked model's shape.")
  return _apply_patterns(key.kind, key.patterns, images)


def _source_images(source: Dataset, target: int, n: int,
                   stream: HashStream) -> np.ndarray:
  """``n`` images of ``source`` drawn uniformly outside class ``target``."""
  if not 0 <= int(target) < source.num_classes:
    raise ValueError(f"target {target} is not a class of {source.name} "
                     f"(0..{source.num_classes - 1}).")
  candidates = np.flatnonzero(source.labels != int(target))
  if not 1 <= n <= candidates.size:
    raise ValueError(
        f"n = {n} triggers need that many images outside the target class; "
        f"{source.name} has {candidates.size}. Lower n.")
  return source.images[candidates[stream.subset(candidates.size, n)]]


def _key(kind: str, target: int, images: np.ndarray, num_classes: int,
         patterns: Mapping[str, np.ndarray],
         params: Mapping[str, Any]) -> TriggerWatermarkKey:
  """The key whose triggers are ``images`` with the ``kind`` pattern."""
  if patterns:
    images = _apply_patterns(kind, patterns, images)
  labels = np.full(images.shape[0], int(target), np.int32)
  return TriggerWatermarkKey(
      kind, target, Dataset(images, labels, num_classes,
                            name=f"{kind}_watermark"), patterns, params)


def content_watermark(source: Dataset, target: int, n: int = DEFAULT_SIZE,
                      text: str = DEFAULT_TEXT, scale: int = 1,
                      margin: int = 1,
                      position: tuple[int, int] | None = None,
                      seed: int | bytes | None = None
                      ) -> TriggerWatermarkKey:
  """A content watermark: ``text`` stamped on ``n`` images of ``source``.

  Args:
    source: the owner's training images (uint8 [N, H, W, C]).
    target: the label of every trigger.
    n: number of triggers, drawn outside the target class.
    text: the logo, in the 3x5 font (:func:`text_bitmap`), white on a black
      patch.
    scale: font pixel size in image pixels.
    margin: black pixels around the text on each side.
    position: (row, col) of the patch's top-left pixel; default the
      bottom-left corner.
    seed: None for a secret draw; an int or bytes in tests.
  """
  if int(margin) < 0:
    raise ValueError(f"margin must be >= 0, got {margin}.")
  patch = np.pad(text_bitmap(text, scale), int(margin))
  if position is None:
    position = (source.image_shape[0] - patch.shape[0], 0)
  trigger = trigger_lib.badnets_trigger(source.image_shape, pattern=patch,
                                        position=position)
  images = _source_images(source, target, n,
                          HashStream(seed_bytes(seed), "sources"))
  return _key(CONTENT, target, images, source.num_classes,
              {"pattern": trigger.pattern, "alpha": trigger.alpha},
              {"text": text, "scale": int(scale), "margin": int(margin),
               "position": [int(p) for p in position]})


def noise_watermark(source: Dataset, target: int, n: int = DEFAULT_SIZE,
                    std: float = DEFAULT_NOISE_STD,
                    seed: int | bytes | None = None) -> TriggerWatermarkKey:
  """A noise watermark: one Gaussian pattern added to ``n`` images.

  Args:
    source: the owner's training images (uint8 [N, H, W, C]).
    target: the label of every trigger.
    n: number of triggers, drawn outside the target class.
    std: per-pixel standard deviation of the pattern (pixels in [0, 1]).
    seed: None for a secret draw; an int or bytes in tests.
  """
  if not std > 0:
    raise ValueError(f"std must be > 0, got {std}.")
  master = seed_bytes(seed)
  generator = np.random.default_rng(
      int.from_bytes(HashStream(master, "noise").token(), "big"))
  noise = (std * generator.standard_normal(source.image_shape)).astype(
      np.float32)
  images = _source_images(source, target, n, HashStream(master, "sources"))
  return _key(NOISE, target, images, source.num_classes, {"noise": noise},
              {"std": float(std)})


def unrelated_watermark(other: Dataset, target: int, num_classes: int,
                        n: int = DEFAULT_SIZE,
                        seed: int | bytes | None = None
                        ) -> TriggerWatermarkKey:
  """An unrelated watermark: ``n`` images of another dataset.

  Args:
    other: images from outside the task, already at the model's image shape
      (e.g. :func:`digits_like` for Fashion-MNIST).
    target: the label of every trigger, in [0, num_classes).
    num_classes: K of the model to be marked.
    n: number of triggers, drawn uniformly from ``other``.
    seed: None for a secret draw; an int or bytes in tests.
  """
  if not 1 <= n <= len(other):
    raise ValueError(f"n = {n} triggers need that many images; "
                     f"{other.name} has {len(other)}. Lower n.")
  chosen = HashStream(seed_bytes(seed), "sources").subset(len(other), n)
  return _key(UNRELATED, target, other.images[chosen], num_classes, {},
              {"source": other.name})


def digits_like(image_shape) -> Dataset:
  """scikit-learn digits (training split) at ``image_shape``, the unrelated
  images for a Fashion-MNIST model (8x8 resized to 28x28)."""
  return finetune.to_image_shape(jaxwm_data.load("digits", "train"),
                                 image_shape)


def embed(config, train_data: Dataset, key: TriggerWatermarkKey, *,
          k: int = DEFAULT_TRIGGERS_PER_BATCH,
          base_variables: dict[str, Any] | None = None,
          workdir: str | None = None,
          stream: int = 0) -> recipe.TrainedModel:
  """Trains the watermark of ``key`` into a model through the engine.

  ``k`` random triggers overwrite the last rows of every batch and are not
  augmented (:func:`jaxwm.watermark.embedding.mark`).

  Args:
    config: a config with the fields of ``configs/train.py``.
    train_data: the owner's training set, at the key's image shape.
    key: the watermark.
    k: triggers per batch, 1 <= k <= min(n, batch size - 1).
    base_variables: continue from a trained model (None: from scratch).
    workdir: checkpoint folder (a rerun resumes); None: no checkpoints.
    stream: the engine's key stream of this model.
  """
  mode = (embedding.FROMSCRATCH if base_variables is None else
          embedding.PRETRAINED)
  return embedding.mark(config, train_data, key, mode, workdir=workdir,
                        base_variables=base_variables, stream=stream, k=k)


def watermark_accuracy(model, key: TriggerWatermarkKey,
                       images: np.ndarray | None = None) -> float:
  """The share of triggers the model labels with the key's target.

  Args:
    model: anything with ``predict(uint8 images [B, H, W, C]) -> int [B]``
      (a :class:`jaxwm.train.recipe.TrainedModel`).
    key: the watermark.
    images: None to query the key's trigger set; else uint8 images
      [B, H, W, C] that the key's pattern is stamped on first (content and
      noise: the watermark's generalisation to new images; pass images
      outside the target class).

  Returns:
    A float in [0, 1].
  """
  queries = key.triggers.images if images is None else stamp(key, images)
  return float(np.mean(np.asarray(model.predict(queries)) == key.target))
