"""MOVE's three steps from one config block, as a launcher calls them.

::

    config = MoveConfig.from_dict(config_dict.move.to_dict())
    marked, key = watermark(config, train)            # Section 5.2
    victims = [recipe.train_model(train_config, marked, stream=1 + i)
               for i in range(3)]
    benigns = [recipe.train_model(train_config, train, stream=20 + i)
               for i in range(3)]
    # Benign models C never sees, for the test over models.
    references = [recipe.train_model(train_config, train, stream=30 + i)
                  for i in range(8)]
    meta = train_meta_classifier(config, key, victims, benigns, WHITE_BOX)
    verdict = verify(config, key, meta, suspect, references, WHITE_BOX)
    verdict.stolen, verdict.to_dict()

Models are :class:`jaxwm.train.recipe.TrainedModel` objects: white-box
features read ``.model`` and ``.variables``, black-box ones only
``.predict_proba``. White-box verification needs ``references`` and
``suspect`` of the architecture the meta-classifier was trained for (the
paper trains a victim and a benign copy of the suspect's architecture when
they differ); black-box verification does not.

Random streams: every draw comes from ``jax.random.PRNGKey(config.seed)``,
folded with 0 for the embedding (which images, which split) and with 1 and
then the trial number for the verification sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from jaxwm.data.dataset import Dataset
from jaxwm.train.recipe import TrainedModel
from jaxwm import fields
from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.watermark.move import meta_classifier as meta_lib
from jaxwm.watermark.move import meta_features
from jaxwm.watermark.move import style as style_lib
from jaxwm.watermark.move import style_images
from jaxwm.watermark.move import verification
from jaxwm.watermark.move.external_features import MoveKey
from jaxwm.watermark.move.external_features import embed

WHITE_BOX = "white_box"
BLACK_BOX = "black_box"
SETTINGS = (WHITE_BOX, BLACK_BOX)
_EMBED_STREAM = 0
_VERIFY_STREAM = 1


@dataclasses.dataclass(frozen=True)
class MoveConfig:
  """Every setting of MOVE (defaults: the paper's where it gives one).

  Attributes:
    seed: the one seed of the embedding and verification draws.
    style_source: the style image (:mod:`.style_images`: ``"texture:SEED"``,
      ``"sklearn:flower.jpg"``, ``"matplotlib:NAME"`` or a file path).
    style: the style transfer's hyper-parameters.
    cache_dir: where stylised images are cached (None: not cached).
    transform_rate: gamma, the transformed share of the training set (10%).
    verification_fraction: share of the transformed images kept for
      verification, out of the meta-classifier's training.
    white_box_features: the white-box features (:mod:`.meta_features`):
      ``"gradient_comparisons"`` (default) or the paper's
      ``"gradient_signs"``.
    pool_threshold: the reduction of ``"gradient_signs"``.
    gradient_batch_size: images per compiled per-sample-gradient call.
    shift: black-box translations, in pixels.
    white_box: the white-box meta-classifier (D -> D/8 -> D/16 -> 2).
    black_box: the black-box meta-classifier (D -> D/2 -> D/4 -> 2).
    m_white_box: verification images, white-box (10).
    m_black_box: verification images, black-box (100).
    alpha: significance level (0.01).
  """

  seed: int = 0
  style_source: str = "texture:0"
  style: style_lib.StyleTransferConfig = style_lib.StyleTransferConfig()
  cache_dir: str | None = None
  transform_rate: float = 0.1
  verification_fraction: float = 0.2
  white_box_features: str = meta_features.GRADIENT_COMPARISONS
  pool_threshold: int = meta_features.POOL_THRESHOLD
  gradient_batch_size: int = 32
  shift: int = 2
  white_box: meta_lib.MetaClassifierConfig = meta_lib.MetaClassifierConfig()
  black_box: meta_lib.MetaClassifierConfig = meta_lib.MetaClassifierConfig(
      hidden_divisors=(2, 4))
  m_white_box: int = 10
  m_black_box: int = 100
  alpha: float = DEFAULT_ALPHA

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> MoveConfig:
    """A MoveConfig from a plain mapping (e.g. ``ConfigDict.to_dict()``);
    the nested blocks ``style``, ``white_box`` and ``black_box`` are
    mappings of their own fields, missing fields take the defaults."""
    values = dict(values)
    fields.known_settings(cls, values, "MOVE")
    nested = {"style": style_lib.StyleTransferConfig,
              "white_box": meta_lib.MetaClassifierConfig,
              "black_box": meta_lib.MetaClassifierConfig}
    defaults = cls()
    for name, kind in nested.items():
      if name in values:
        block = dict(values[name])
        fields.known_settings(kind, block, name)
        values[name] = dataclasses.replace(getattr(defaults, name), **block)
    return cls(**values)

  def __post_init__(self):
    if self.white_box_features not in meta_features.WHITE_BOX_FEATURES:
      raise ValueError(
          f"white_box_features must be one of "
          f"{meta_features.WHITE_BOX_FEATURES}, got "
          f"{self.white_box_features!r}.")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def meta_classifier(self, setting: str) -> meta_lib.MetaClassifierConfig:
    return self.white_box if _check_setting(setting) == WHITE_BOX else (
        self.black_box)

  def m(self, setting: str) -> int:
    return self.m_white_box if _check_setting(setting) == WHITE_BOX else (
        self.m_black_box)


def _check_setting(setting: str) -> str:
  if setting not in SETTINGS:
    raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}.")
  return setting


def _key(config: MoveConfig, stream: int) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), stream)


def style_transform(config: MoveConfig, image_shape: tuple[int, int, int]
                    ) -> tuple[style_lib.ImageTransform, dict[str, Any]]:
  """The configured style transfer for images of ``image_shape`` (H, W, C),
  and its JSON description (style source, the style image's SHA-256 at
  that shape, and the settings) for the key."""
  style_image = style_images.load_style_image(config.style_source,
                                              image_shape)
  description = {
      "name": "style_transfer", "style_source": config.style_source,
      "style_sha256": hashlib.sha256(style_image.tobytes()).hexdigest(),
      "style": config.style.to_dict()}
  return (style_lib.make_style_transform(style_image, config.style,
                                         config.cache_dir), description)


def watermark(config: MoveConfig, train: Dataset,
              transform: style_lib.ImageTransform | None = None,
              description: Mapping[str, Any] | None = None
              ) -> tuple[Dataset, MoveKey]:
  """Embeds the external features into ``train`` (Section 5.2).

  Args:
    config: the MOVE settings.
    train: the owner's training set.
    transform: a user's own ``images -> images`` transform (uint8
      [N, H, W, C] both ways); default the configured style transfer.
    description: JSON record of a user's transform, kept in the key.

  Returns:
    (the victim's training set, the owner's secret MoveKey).
  """
  if transform is None:
    transform, description = style_transform(config, train.image_shape)
  elif description is None:
    description = {"name": getattr(transform, "__name__", "user_transform")}
  return embed(train, transform, _key(config, _EMBED_STREAM),
               transform_rate=config.transform_rate,
               verification_fraction=config.verification_fraction,
               description=description)


def check_verification_size(config: MoveConfig, key: MoveKey,
                            setting: str) -> None:
  """Raises ValueError when ``key`` holds fewer verification rows than the
  m of ``setting``: called right after :func:`watermark`, before any model
  is trained for a test that could not run."""
  verification.check_sample_size(config.m(setting),
                                 key.verification_positions.size)


def features(config: MoveConfig, key: MoveKey, positions: np.ndarray,
             model: TrainedModel, setting: str) -> np.ndarray:
  """Meta-features of ``model`` on the key's rows ``positions``:
  white-box float32 [n, 2 L] (``gradient_comparisons``) or int8 [n, D]
  (``gradient_signs``), black-box float32 [n, 5 K]."""
  transformed, benign_images = key.pairs(positions)
  if _check_setting(setting) == WHITE_BOX:
    if config.white_box_features == meta_features.GRADIENT_SIGNS:
      return meta_features.gradient_sign_features(
          model.model, model.variables, transformed.images,
          transformed.labels, pool_threshold=config.pool_threshold,
          batch_size=config.gradient_batch_size)
    return meta_features.gradient_comparison_features(
        model.model, model.variables, transformed.images, benign_images,
        transformed.labels, batch_size=config.gradient_batch_size)
  return meta_features.probability_difference_features(
      model.predict_proba, transformed.images, benign_images,
      transformed.num_classes, shift=config.shift)


def _models(models: TrainedModel | Sequence[TrainedModel]
            ) -> list[TrainedModel]:
  if isinstance(models, Sequence):
    if not models:
      raise ValueError("pass at least one model.")
    return list(models)
  return [models]


def train_meta_classifier(config: MoveConfig, key: MoveKey,
                          victim: TrainedModel | Sequence[TrainedModel],
                          benign: TrainedModel | Sequence[TrainedModel],
                          setting: str, *, workdir: str | None = None
                          ) -> meta_lib.MetaClassifier:
  """Trains C on the key's meta-classifier rows only (Section 5.3).

  Args:
    config: the MOVE settings.
    key: the owner's MoveKey.
    victim: the victim model (features labelled 1), or several (e.g.
      victims of other seeds, so that C learns the external features
      rather than one model's weights); pass as many as ``benign`` to keep
      the classes balanced.
    benign: the benign model (features labelled 0), or several.
    setting: ``"white_box"`` or ``"black_box"``.
    workdir: checkpoint folder of C's training (resumable), or None.
  """
  positions = key.meta_positions

  def stacked(models):
    return np.concatenate([features(config, key, positions, model, setting)
                           for model in _models(models)])

  return meta_lib.train_meta_classifier(
      stacked(victim), stacked(benign), config.meta_classifier(setting),
      workdir=workdir)


def held_out_accuracy(config: MoveConfig, key: MoveKey,
                      meta: meta_lib.MetaClassifier, victim: TrainedModel,
                      benign: TrainedModel, setting: str) -> float:
  """C's accuracy on victim vs benign features of all verification rows,
  which C never saw."""
  positions = key.verification_positions
  return meta.accuracy(features(config, key, positions, victim, setting),
                       features(config, key, positions, benign, setting))


def verify(config: MoveConfig, key: MoveKey, meta: meta_lib.MetaClassifier,
           suspect: TrainedModel, references: Sequence[TrainedModel],
           setting: str, *, trial: int = 0) -> verification.MoveVerdict:
  """Tests whether ``suspect`` was stolen from the victim (Section 5.4,
  and jaxwm's test over models: :mod:`.verification`).

  Args:
    config: the MOVE settings (m and alpha per setting).
    key: the owner's MoveKey.
    meta: C for this setting (and, white-box, the suspect's architecture).
    suspect: the suspect model S.
    references: K >= 2 benign models that C never saw, trained from
      different seeds (white-box: of S's architecture); the first is B,
      the paired test's.
    setting: ``"white_box"`` or ``"black_box"``.
    trial: selects an independent draw of the m verification images.

  Returns:
    The MoveVerdict of both tests.
  """
  references = _models(references)
  rng = jax.random.fold_in(_key(config, _VERIFY_STREAM), trial)
  positions = verification.sample_positions(key.verification_positions,
                                            config.m(setting), rng)

  def confidence(model):
    return meta.victim_probability(features(config, key, positions, model,
                                            setting))

  return verification.ownership_test(
      confidence(suspect), np.stack([confidence(r) for r in references]),
      setting=setting, alpha=config.alpha, positions=positions)
