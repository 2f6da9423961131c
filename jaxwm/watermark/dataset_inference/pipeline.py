"""Dataset Inference's steps as a launcher calls them: its settings, the
owner's samples, the regressor's fit and the verification of a suspect
(Dataset Inference paper, Section 5; the MOVE paper's Section 2.2).

The owner draws ``regressor_samples + m`` private samples (from the
victim's training set) and as many public ones (that the victim never
saw, e.g. the test set). The first ``regressor_samples`` of each train
the confidence regressor on the victim's embeddings; the last ``m`` of
each are kept for verification. A suspect S is verified on those: with
c_priv,i and c_pub,i the regressor's confidences on S's embeddings of
the i-th private and public sample, the owner tests

    H0: mu_priv <= mu_pub    against    H1: mu_priv > mu_pub

by a one-sided Welch t-test (the authors' code's test,
:func:`jaxwm.verify.welch.welch_ttest`, rank-floored p-value) and claims S
was derived from its private data iff H0 is rejected at alpha. The
embeddings are MinGD's (white-box) or Blind Walk's (black-box).

One draw gives one test (the authors' code repeats draws and combines
their p-values, which is not a valid p-value; repeated draws here are
separate tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from jaxwm import data as jaxwm_data
from jaxwm import fields
from jaxwm.verify.levels import DEFAULT_ALPHA
from jaxwm.verify.welch import welch_ttest
from jaxwm.verify.welch import WelchTTestResult
from jaxwm.watermark.dataset_inference import distances as distances_lib
from jaxwm.watermark.dataset_inference import regressor as regressor_lib

WHITE_BOX = "white_box"
BLACK_BOX = "black_box"
SETTINGS = (WHITE_BOX, BLACK_BOX)
# Key streams folded into jax.random.key(config.seed).
_SAMPLES_STREAM, _WALK_STREAM = 0, 1
_NESTED = {"mingd": distances_lib.MinGDConfig,
           "blind_walk": distances_lib.BlindWalkConfig,
           "regressor": regressor_lib.RegressorConfig}


@dataclasses.dataclass(frozen=True)
class DatasetInferenceConfig:
  """Dataset Inference's settings.

  Attributes:
    setting: :data:`WHITE_BOX` (MinGD) or :data:`BLACK_BOX` (Blind Walk).
    seed: the seed of the samples' draw and the walks' directions.
    regressor_samples: private and public samples (each) that train the
      regressor.
    m: private and public samples (each) of a verification.
    alpha: the significance level.
    norms: the distances' norms, a subset of ``("linf", "l2", "l1")``.
    batch_size: (sample, class) pairs per compiled call.
    mingd: MinGD's steps.
    blind_walk: Blind Walk's steps and directions.
    regressor: the confidence regressor.
  """

  setting: str = WHITE_BOX
  seed: int = 0
  regressor_samples: int = 500
  m: int = 50
  alpha: float = DEFAULT_ALPHA
  norms: tuple[str, ...] = distances_lib.NORMS
  batch_size: int = 512
  mingd: distances_lib.MinGDConfig = distances_lib.MinGDConfig()
  blind_walk: distances_lib.BlindWalkConfig = (
      distances_lib.BlindWalkConfig())
  regressor: regressor_lib.RegressorConfig = regressor_lib.RegressorConfig()

  def __post_init__(self):
    if self.setting not in SETTINGS:
      raise ValueError(f"setting must be one of {SETTINGS}, got "
                       f"{self.setting!r}.")
    if self.regressor_samples < 2 or self.m < 2:
      raise ValueError(
          f"regressor_samples ({self.regressor_samples}) and m ({self.m}) "
          "must be at least 2.")
    if not 0.0 < self.alpha < 1.0:
      raise ValueError(f"alpha must be in (0, 1), got {self.alpha}.")
    object.__setattr__(self, "norms", distances_lib.check_norms(self.norms))

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> DatasetInferenceConfig:
    """From a plain mapping (e.g. ``ConfigDict.to_dict()``); the nested
    blocks ``mingd``, ``blind_walk`` and ``regressor`` are mappings of
    their own fields; missing fields take the defaults."""
    values = dict(values)
    fields.known_settings(cls, values, "dataset_inference")
    defaults = cls()
    for name, kind in _NESTED.items():
      if name in values:
        block = dict(values[name])
        fields.known_settings(kind, block, f"dataset_inference.{name}")
        values[name] = dataclasses.replace(getattr(defaults, name), **block)
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class Samples:
  """The owner's samples: rows of its private and public sets.

  Attributes:
    private_train, public_train: int64 [regressor_samples], the
      regressor's.
    private_verify, public_verify: int64 [m], verification's.
  """

  private_train: np.ndarray
  public_train: np.ndarray
  private_verify: np.ndarray
  public_verify: np.ndarray


def draw_samples(config: DatasetInferenceConfig, num_private: int,
                 num_public: int) -> Samples:
  """Disjoint random rows of the private and the public set.

  Raises:
    ValueError: a set holds fewer than ``regressor_samples + m`` rows.
  """
  need = config.regressor_samples + config.m
  key = jax.random.fold_in(jax.random.key(config.seed), _SAMPLES_STREAM)
  rows = []
  for index, (name, size) in enumerate((("private", num_private),
                                        ("public", num_public))):
    if size < need:
      raise ValueError(
          f"the {name} set holds {size} samples but regressor_samples + m "
          f"= {need}; lower dataset_inference.regressor_samples or m.")
    rows.append(np.asarray(jax.random.permutation(
        jax.random.fold_in(key, index), size)[:need], np.int64))
  split = config.regressor_samples
  return Samples(rows[0][:split], rows[1][:split], rows[0][split:],
                 rows[1][split:])


def embedding_distances(config: DatasetInferenceConfig, model,
                        variables: Any, dataset: jaxwm_data.Dataset
                        ) -> np.ndarray:
  """float32 [N, K, P]: the setting's distances of ``dataset``'s samples
  under the model (MinGD to each of the K classes; Blind Walk along K
  directions). The walks' directions depend on the seed alone, so every
  model is walked along the same ones."""
  if config.setting == WHITE_BOX:
    return distances_lib.mingd_distances(
        model, variables, dataset.images, dataset.num_classes,
        config=config.mingd, norms=config.norms,
        batch_size=config.batch_size)[0]
  key = jax.random.fold_in(jax.random.key(config.seed), _WALK_STREAM)
  return distances_lib.blind_walk_distances(
      model, variables, dataset.images, dataset.labels, key,
      config=config.blind_walk, norms=config.norms,
      batch_size=config.batch_size)


def fit(config: DatasetInferenceConfig, model, variables: Any,
        private: jaxwm_data.Dataset, public: jaxwm_data.Dataset
        ) -> regressor_lib.ConfidenceRegressor:
  """The confidence regressor of the victim (``model``, ``variables``) on
  its embeddings of ``private`` (its training samples) against
  ``public``."""
  return regressor_lib.train_regressor(
      embedding_distances(config, model, variables, private),
      embedding_distances(config, model, variables, public),
      config.regressor)


@dataclasses.dataclass(frozen=True)
class DatasetInferenceVerdict:
  """The outcome of one verification.

  Attributes:
    test: the Welch t-test of c_priv against c_pub (``delta_p``:
      mean(c_priv) - mean(c_pub)).
    alpha: the significance level.
    stolen: whether H0 is rejected.
    private_confidence: float64 [m], c_priv.
    public_confidence: float64 [m], c_pub.
  """

  test: WelchTTestResult
  alpha: float
  stolen: bool
  private_confidence: np.ndarray
  public_confidence: np.ndarray


def verify(config: DatasetInferenceConfig,
           regressor: regressor_lib.ConfidenceRegressor, model,
           variables: Any, private: jaxwm_data.Dataset,
           public: jaxwm_data.Dataset) -> DatasetInferenceVerdict:
  """Whether the suspect (``model``, ``variables``) knows ``private``.

  Args:
    config: the settings (the victim's).
    regressor: the victim's regressor (:func:`fit`).
    model, variables: the suspect.
    private: m of the owner's private samples the regressor never saw.
    public: m public samples the regressor never saw.
  """
  private_confidence = regressor.confidence(
      embedding_distances(config, model, variables, private))
  public_confidence = regressor.confidence(
      embedding_distances(config, model, variables, public))
  test = welch_ttest(private_confidence, public_confidence)
  return DatasetInferenceVerdict(test, config.alpha,
                                 test.rejects(config.alpha),
                                 private_confidence, public_confidence)
