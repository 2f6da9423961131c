"""STRIP (Gao et al., ACSAC 2019): detect triggered inputs by the entropy of
predictions under superimposition.

Each suspect input x is superimposed on N clean images x_1 .. x_N drawn at
random (with replacement, as STRIP's public code) from a held-out pool,
``clip(a x + b x_n, 0, 1)`` with weights a = b = 1 by default (STRIP's
additive overlay); its STRIP entropy is the mean over n of the Shannon
entropy, in bits, of the model's prediction on the overlay. A sample-agnostic
targeted trigger survives the overlays, so the predictions stay on the
target class and the entropy is low; a clean input's predictions scatter.
The UBW paper (Appendix G.3, Table 10) reports the mean entropy over 100
triggered test images: low for BadNets, high for the untargeted UBW.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.defenses import filtering
from jaxwm.defenses._model_calls import on_one_device
from jaxwm.metrics import entropy_from_logits
from jaxwm.train.step import to_float_images


@dataclasses.dataclass(frozen=True)
class StripConfig:
  """Settings of STRIP.

  Attributes:
    num_overlays: N, clean images superimposed on each input (100).
    input_weight: a, the suspect input's weight in the overlay.
    overlay_weight: b, the clean image's weight (a = b = 1 adds the images
      and clips, as STRIP's code; 0.5 each averages them).
    inputs_per_call: suspect inputs evaluated together (N of them each).
  """

  num_overlays: int = 100
  input_weight: float = 1.0
  overlay_weight: float = 1.0
  inputs_per_call: int = 8

  def __post_init__(self):
    if self.num_overlays < 1 or self.inputs_per_call < 1:
      raise ValueError(
          f"num_overlays ({self.num_overlays}) and inputs_per_call "
          f"({self.inputs_per_call}) must be >= 1.")
    if self.input_weight <= 0 or self.overlay_weight <= 0:
      raise ValueError(
          f"input_weight ({self.input_weight}) and overlay_weight "
          f"({self.overlay_weight}) must be > 0.")


@functools.partial(jax.jit, static_argnames=("model", "config"))
def _entropies(variables: Any, inputs: jax.Array, pool: jax.Array,
               key: jax.Array, *, model: Any,
               config: StripConfig) -> jax.Array:
  picks = jax.random.randint(key, (inputs.shape[0], config.num_overlays), 0,
                             pool.shape[0])

  def one_input(args):
    image, pick = args
    overlays = jnp.clip(config.input_weight * image[None] +
                        config.overlay_weight * pool[pick], 0.0, 1.0)
    logits = model.apply(variables, overlays, train=False)
    return jnp.mean(entropy_from_logits(logits)) / math.log(2.0)

  return jax.lax.map(one_input, (inputs, picks),
                     batch_size=config.inputs_per_call)


def strip_entropies(model: Any, variables: Any, inputs: np.ndarray,
                    overlay_pool: np.ndarray, key: jax.Array,
                    config: StripConfig | None = None) -> np.ndarray:
  """The STRIP entropy of each input.

  Args:
    model: a jaxwm model.
    variables: its variables.
    inputs: uint8 [M, H, W, C] or float in [0, 1], the suspect inputs.
    overlay_pool: uint8 or float [P, H, W, C], held-out clean images.
    key: jax.random key; draws the overlays of every input.
    config: settings; default :class:`StripConfig`.

  Returns:
    float64 [M], entropies in bits, in [0, log2 K].
  """
  config = config or StripConfig()
  inputs = np.asarray(inputs)
  overlay_pool = np.asarray(overlay_pool)
  if (inputs.ndim != 4 or overlay_pool.ndim != 4 or
      inputs.shape[1:] != overlay_pool.shape[1:]):
    raise ValueError(
        f"inputs {inputs.shape} and overlay_pool {overlay_pool.shape} must "
        "both be images [N, H, W, C] of one shape.")
  if not inputs.shape[0] or not overlay_pool.shape[0]:
    raise ValueError("inputs and overlay_pool must not be empty.")
  entropies = _entropies(
      *on_one_device((variables, to_float_images(jnp.asarray(inputs)),
                      to_float_images(jnp.asarray(overlay_pool)), key)),
      model=model, config=config)
  return np.asarray(entropies, np.float64)


@dataclasses.dataclass(frozen=True)
class StripResult:
  """STRIP entropies of triggered and clean inputs.

  Attributes:
    triggered_entropy: float64 [M], per triggered input, in bits.
    clean_entropy: float64 [M'], per clean input, in bits.
    auroc: AUROC of low entropy as the sign of a trigger (triggered inputs
      positive).
    config: the settings used.
  """

  triggered_entropy: np.ndarray
  clean_entropy: np.ndarray
  auroc: float
  config: StripConfig

  @property
  def mean_triggered_entropy(self) -> float:
    """The UBW paper's "averaged entropy" (Table 10)."""
    return float(np.mean(self.triggered_entropy))

  @property
  def mean_clean_entropy(self) -> float:
    return float(np.mean(self.clean_entropy))

  def to_dict(self) -> dict[str, Any]:
    """The JSON record of a launcher's results."""
    return {**dataclasses.asdict(self.config),
            "entropy_unit": "bits",
            "mean_triggered_entropy": self.mean_triggered_entropy,
            "mean_clean_entropy": self.mean_clean_entropy,
            "num_triggered": int(self.triggered_entropy.size),
            "num_clean": int(self.clean_entropy.size),
            "auroc": self.auroc}


def strip(model: Any, variables: Any, triggered: np.ndarray,
          clean: np.ndarray, overlay_pool: np.ndarray, key: jax.Array,
          config: StripConfig | None = None) -> StripResult:
  """STRIP on triggered and clean inputs, and its AUROC between them.

  Args:
    model: a jaxwm model.
    variables: its variables.
    triggered: uint8 or float [M, H, W, C], inputs carrying the trigger.
    clean: uint8 or float [M', H, W, C], clean inputs.
    overlay_pool: uint8 or float [P, H, W, C], held-out clean images to
      superimpose (disjoint from ``clean``).
    key: jax.random key.
    config: settings; default :class:`StripConfig`.

  Returns:
    A :class:`StripResult`.
  """
  config = config or StripConfig()
  key_triggered, key_clean = jax.random.split(key)
  triggered_entropy = strip_entropies(model, variables, triggered,
                                      overlay_pool, key_triggered, config)
  clean_entropy = strip_entropies(model, variables, clean, overlay_pool,
                                  key_clean, config)
  is_triggered = np.r_[np.ones(triggered_entropy.size, bool),
                       np.zeros(clean_entropy.size, bool)]
  auroc = filtering.detection_auroc(
      -np.r_[triggered_entropy, clean_entropy], is_triggered)
  return StripResult(triggered_entropy, clean_entropy, auroc, config)
