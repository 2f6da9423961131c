"""Dataset Inference's confidence regressor (Dataset Inference paper,
Section 5, "ownership tester").

A sample's embedding is its distances [K, P] (K classes or directions, P
norms, :mod:`jaxwm.watermark.dataset_inference.distances`), sorted over K
(the authors' code sorts MinGD's; sorting Blind Walk's directions too
makes the embedding independent of their order), standardised per norm
with the victim's private samples' mean and deviation, and flattened to
K * P values. A one-hidden-layer MLP with a tanh output g is trained by
full-batch SGD to score the victim's private (training) samples above
public ones: loss -mean((2 y - 1) g(e)), y = 1 for private samples (the
authors' code). Its score g in (-1, 1) is the confidence that a sample's
embedding shows it was trained on.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxwm.train import compiler


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
  """The regressor's settings (defaults: the authors' code's).

  Attributes:
    hidden: hidden units.
    steps: full-batch SGD steps.
    learning_rate: SGD's learning rate.
    seed: the initialisation's seed.
  """

  hidden: int = 100
  steps: int = 1000
  learning_rate: float = 0.1
  seed: int = 0


class _Mlp(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden)(x))
    return jnp.tanh(nn.Dense(1)(x))[:, 0]


@dataclasses.dataclass(frozen=True)
class ConfidenceRegressor:
  """A trained regressor with its standardisation.

  Attributes:
    mean: float32 [P], the victim's private distances' mean per norm.
    std: float32 [P], their deviation per norm (at least 1e-12).
    params: the MLP's parameters.
    hidden: its hidden units.
  """

  mean: np.ndarray
  std: np.ndarray
  params: Any
  hidden: int

  def embed(self, distances: np.ndarray) -> jax.Array:
    """float32 [N, K * P] of distances [N, K, P]."""
    return embed(distances, self.mean, self.std)

  def confidence(self, distances: np.ndarray) -> np.ndarray:
    """float64 [N] in [-1, 1]: g of each sample's embedding."""
    return np.asarray(_Mlp(self.hidden).apply(
        {"params": self.params}, self.embed(distances)), np.float64)


def embed(distances: np.ndarray, mean: np.ndarray,
          std: np.ndarray) -> jax.Array:
  """Sorted over K, standardised per norm, flattened: float32 [N, K * P]
  of distances [N, K, P] with mean and std [P]."""
  distances = jnp.asarray(distances, jnp.float32)
  if distances.ndim != 3:
    raise ValueError(f"distances must be [N, K, P], got shape "
                     f"{distances.shape}.")
  standard = (jnp.sort(distances, axis=1) - mean) / std
  return standard.reshape(standard.shape[0], -1)


@functools.lru_cache(maxsize=4)
def _train_fn(config: RegressorConfig):
  model = _Mlp(config.hidden)
  optimizer = optax.sgd(config.learning_rate)

  def train(features, signs):
    params = model.init(jax.random.key(config.seed), features)["params"]

    def loss(p):
      return -jnp.mean(signs * model.apply({"params": p}, features))

    def step(carry, _):
      p, state = carry
      updates, state = optimizer.update(jax.grad(loss)(p), state, p)
      return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                  None, length=config.steps)
    return params

  return compiler.jit(train)


def train_regressor(private: np.ndarray, public: np.ndarray,
                    config: RegressorConfig = RegressorConfig()
                    ) -> ConfidenceRegressor:
  """The regressor of the victim's embeddings (the whole training one
  compiled scan).

  Args:
    private: float [N_priv, K, P], the victim's distances of samples of
      its training set (label 1).
    public: float [N_pub, K, P], its distances of samples it never saw
      (label 0).
    config: the MLP and its training.
  """
  private = np.asarray(private, np.float32)
  public = np.asarray(public, np.float32)
  if private.ndim != 3 or public.shape[1:] != private.shape[1:]:
    raise ValueError(f"private and public must be [N, K, P] of one K and "
                     f"P, got {private.shape} and {public.shape}.")
  mean = private.mean(axis=(0, 1))
  std = np.maximum(private.std(axis=(0, 1)), 1e-12)
  features = jnp.concatenate([embed(private, mean, std),
                              embed(public, mean, std)])
  signs = jnp.concatenate([jnp.ones(len(private)), -jnp.ones(len(public))])
  params = _train_fn(config)(features, signs)
  return ConfidenceRegressor(mean, std, params, config.hidden)
