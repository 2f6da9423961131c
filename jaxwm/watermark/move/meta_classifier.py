"""MOVE's ownership meta-classifier C (Section 5.3, Eqs. 4-9).

A binary MLP on meta-features (:mod:`jaxwm.watermark.move.meta_features`):
features of the victim model are labelled 1, those of the benign model on
the same transformed images 0, and C is fitted with the cross-entropy (Eq. 9)
by jaxwm's training engine (:func:`jaxwm.train.make_train_step` and
:func:`jaxwm.train.fit`). The hidden widths are D // d for each divisor d
(the authors' white-box MLP is D -> D/8 -> D/16 -> 2, their black-box one
D -> D/2 -> D/4 -> 2), at least ``min_width``.

Each feature is standardised with the mean and standard deviation of the
training features (a constant feature gives 0); the same statistics are
applied to every feature vector C later scores, so training and
verification see one scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from jaxwm.models import common
from jaxwm.train import loop, optim, sharding
from jaxwm.train import recipe
from jaxwm.train import step as step_lib
from jaxwm.train.state import create_train_state

VICTIM = 1
BENIGN = 0


@dataclasses.dataclass(frozen=True)
class MetaClassifierConfig:
  """How the meta-classifier is built and trained.

  Attributes:
    hidden_divisors: one hidden layer of width D // d per entry.
    min_width: the narrowest hidden layer.
    optimizer: ``"adam"`` or ``"sgd"`` (:func:`jaxwm.train.make_optimizer`).
    learning_rate: peak learning rate (cosine decay to 0).
    weight_decay: decoupled weight decay.
    num_epochs: epochs over the meta-training features.
    batch_size: global batch size, a multiple of the devices.
    seed: initialisation and shuffling seed.
  """

  hidden_divisors: tuple[int, ...] = (8, 16)
  min_width: int = 8
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  num_epochs: int = 20
  batch_size: int = 64
  seed: int = 0

  def __post_init__(self):
    object.__setattr__(self, "hidden_divisors",
                       tuple(int(d) for d in self.hidden_divisors))
    if any(d < 1 for d in self.hidden_divisors):
      raise ValueError(f"hidden_divisors must be >= 1, got "
                       f"{self.hidden_divisors}.")
    for name in ("min_width", "num_epochs", "batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")

  def widths(self, feature_size: int) -> tuple[int, ...]:
    return tuple(max(self.min_width, feature_size // d)
                 for d in self.hidden_divisors)

  def optimizer_config(self) -> ml_collections.ConfigDict:
    """The block :func:`jaxwm.train.make_optimizer` reads."""
    return ml_collections.ConfigDict(dict(
        optimizer=self.optimizer, learning_rate=self.learning_rate,
        schedule="cosine", momentum=0.9, nesterov=False,
        weight_decay=self.weight_decay))


class MetaMLP(nn.Module):
  """ReLU MLP over feature vectors float [B, D] -> logits float32 [B, 2]; its
  last layer is the ``head`` of the jaxwm model conventions."""

  num_classes: int
  widths: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.astype(self.dtype)
    for width in self.widths:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return common.classifier_head(x, self.num_classes, self.dtype, self)


@dataclasses.dataclass(frozen=True)
class FeatureSet:
  """Feature vectors with binary labels, in the form the engine's
  :func:`jaxwm.train.fit` reads a Dataset: ``images`` (here float32 [N, D]
  standardised features) and ``labels`` (int32 [N])."""

  images: np.ndarray
  labels: np.ndarray
  num_classes: int = 2  # victim and benign; part of a checkpoint's identity.

  def __len__(self) -> int:
    return int(self.labels.shape[0])


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
  features = np.asarray(features, np.float32)
  if features.ndim != 2 or features.shape[0] == 0:
    raise ValueError(f"{name} must be a non-empty [N, D] array, got shape "
                     f"{features.shape}.")
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{name} contains NaN or inf; the meta-features must be "
                     "finite.")
  return features


@dataclasses.dataclass(frozen=True)
class MetaClassifier:
  """A trained meta-classifier C and its feature standardisation.

  Attributes:
    network: the trained MLP (a :class:`jaxwm.train.recipe.TrainedModel`).
    mean: float32 [D], the training features' mean.
    scale: float32 [D], their standard deviation (1 where it is 0).
  """

  network: recipe.TrainedModel
  mean: np.ndarray
  scale: np.ndarray

  @property
  def feature_size(self) -> int:
    return int(self.mean.shape[0])

  def standardise(self, features: np.ndarray) -> np.ndarray:
    features = _as_features(features, "features")
    if features.shape[1] != self.feature_size:
      raise ValueError(
          f"features have {features.shape[1]} values per row but the "
          f"meta-classifier was trained on {self.feature_size}; compute them "
          "from a model of the architecture it was trained for.")
    return (features - self.mean) / self.scale

  def victim_probability(self, features: np.ndarray) -> np.ndarray:
    """C's confidence that each feature vector came from a model carrying the
    external features: float64 [N] in [0, 1] for features [N, D]."""
    probabilities = self.network.predict_proba(self.standardise(features))
    return np.asarray(probabilities[:, VICTIM], np.float64)

  def accuracy(self, victim_features: np.ndarray,
               benign_features: np.ndarray) -> float:
    """Fraction of rows C labels right (victim 1, benign 0)."""
    correct = np.concatenate([
        self.victim_probability(victim_features) > 0.5,
        self.victim_probability(benign_features) <= 0.5])
    return float(np.mean(correct))


def train_meta_classifier(victim_features: np.ndarray,
                          benign_features: np.ndarray,
                          config: MetaClassifierConfig = MetaClassifierConfig(),
                          *, mesh: Mesh | None = None,
                          workdir: str | None = None) -> MetaClassifier:
  """Fits C on victim (label 1) and benign (label 0) features (Eq. 9).

  Args:
    victim_features: float or int [N1, D], the victim model's features.
    benign_features: [N0, D], the benign model's features.
    config: architecture and training recipe.
    mesh: device mesh; default all devices.
    workdir: checkpoint folder (resumable); None disables checkpoints.

  Returns:
    The trained MetaClassifier.
  """
  victim = _as_features(victim_features, "victim_features")
  benign = _as_features(benign_features, "benign_features")
  if victim.shape[1] != benign.shape[1]:
    raise ValueError(
        f"victim and benign features differ in length ({victim.shape[1]} vs "
        f"{benign.shape[1]}); compute both from models of one architecture.")
  features = np.concatenate([victim, benign])
  labels = np.concatenate([np.full(len(victim), VICTIM, np.int32),
                           np.full(len(benign), BENIGN, np.int32)])
  mean = features.mean(axis=0)
  scale = features.std(axis=0)
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  train_set = FeatureSet((features - mean) / scale, labels)

  mesh = sharding.make_mesh() if mesh is None else mesh
  model = MetaMLP(num_classes=2, widths=config.widths(features.shape[1]))
  steps_per_epoch = max(1, len(train_set) // config.batch_size)
  optimizer = optim.make_optimizer(config.optimizer_config(), steps_per_epoch,
                                   config.num_epochs)
  key = jax.random.PRNGKey(config.seed)
  state = create_train_state(model, optimizer, features.shape[1:],
                             jax.random.fold_in(key, 0))
  step_fn = step_lib.make_train_step(model, optimizer, mesh=mesh)
  state = loop.fit(step_fn, state, train_set, batch_size=config.batch_size,
                   num_epochs=config.num_epochs,
                   data_rng=jax.random.fold_in(key, 1), mesh=mesh,
                   workdir=workdir, log_every_steps=steps_per_epoch)
  network = recipe.TrainedModel(model, state, mesh,
                                step_lib.make_predict_fn(model, mesh))
  return MetaClassifier(network, mean, scale)
