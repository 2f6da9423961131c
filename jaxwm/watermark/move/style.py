"""Style transfer on a fixed random network: MOVE's external-feature transform.

MOVE (Section 5.2) embeds external features by restyling a few training
images with a defender-chosen style image. The transform here needs no
pretrained network: it is Gatys et al.'s optimisation on the features of a
fixed, seeded, random multi-scale shallow CNN: at each scale s of an image
pyramid (the image average-pooled by s = 1, 2, 4) one convolutional layer
of ``filters_per_scale`` random zero-mean ``kernel_size`` x ``kernel_size``
filters, followed by a ReLU. Shallow
networks with random filters are good texture descriptors (Ustyuzhaninov et
al., 2016, "Texture synthesis using shallow convolutional networks with
random filters", who widen the kernels instead of pooling the image; the
pyramid gives the same range of receptive fields at a fraction of the cost),
and random-weight networks transfer style (He et al., 2016).

For a content image c and a style image s (both float [H, W, C] in [0, 1])
the transform minimises, starting from x = c,

    L(x) = content_weight * sum_k mean((F_k(x) - F_k(c))^2)
         + style_weight   * sum_k mean((G_k(x) - G_k(s))^2),

where F_k(x) [H_k, W_k, n] are the ReLU feature maps at scale k and
G_k(x) = F_k(x)^T F_k(x) / (H_k W_k) [n, n] their Gram matrices (Gatys et al.,
2016, Eqs. 1-5, with our normalisation), by ``steps`` Adam steps on the
pixels, each followed by a clip to [0, 1]. Images are processed in batches,
one optimisation per image (``jax.vmap``), compiled once per batch shape.

:func:`style_transfer` is the pure transform; :func:`cached_style_transfer`
stores its output under a SHA-256 fingerprint of its inputs with
:mod:`jaxwm.secure_files`; :func:`make_style_transform` packages either as
the ``images -> images`` function that MOVE's embedding takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import flax.linen as nn

from jaxwm import secure_files
from jaxwm.train import compiler

# uint8 [N, H, W, C] -> uint8 [N, H, W, C]: any transform MOVE can embed.
ImageTransform = Callable[[np.ndarray], np.ndarray]
_CACHE_FORMAT = "jaxwm/move/stylised-images/v1"


@dataclasses.dataclass(frozen=True)
class StyleTransferConfig:
  """Hyper-parameters of the random-network style transfer.

  Attributes:
    scales: the pyramid's pooling factors, one random layer per scale.
    kernel_size: the random filters' width in pixels.
    filters_per_scale: random filters n at each scale.
    network_seed: seed of the random filters.
    steps: Adam steps per image.
    learning_rate: Adam's step size on pixels in [0, 1].
    content_weight: weight of the feature (content) loss.
    style_weight: weight of the Gram-matrix (style) loss.
    batch_size: images optimised together in one compiled call.
  """

  scales: tuple[int, ...] = (1, 2, 4)
  kernel_size: int = 3
  filters_per_scale: int = 32
  network_seed: int = 0
  steps: int = 100
  learning_rate: float = 0.02
  content_weight: float = 1.0
  style_weight: float = 10.0
  batch_size: int = 64

  def __post_init__(self):
    object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
    if not self.scales or min(self.scales) < 1:
      raise ValueError(f"scales must be positive integers, got "
                       f"{self.scales}.")
    for name in ("kernel_size", "filters_per_scale", "steps", "batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("learning_rate", "content_weight", "style_weight"):
      if not float(getattr(self, name)) >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RandomNetwork:
  """The fixed random multi-scale network.

  Attributes:
    filters: float32 [k, k, C, n] per scale (k = kernel_size): zero-mean
      Gaussian filters of unit norm (zero mean: flat regions give no
      response, so the features describe texture rather than brightness).
    scales: the pooling factor of each scale.
  """

  filters: tuple[jax.Array, ...]
  scales: tuple[int, ...]

  def feature_maps(self, image: jax.Array) -> tuple[jax.Array, ...]:
    """ReLU responses F_k, float [H_k, W_k, n] per scale, of one float image
    [H, W, C] in [0, 1]."""
    x = (image[None] - 0.5) / 0.25
    maps = []
    for scale, weights in zip(self.scales, self.filters):
      pooled = x if scale == 1 else nn.avg_pool(
          x, (scale, scale), strides=(scale, scale), padding="SAME")
      maps.append(jax.nn.relu(jax.lax.conv_general_dilated(
          pooled, weights, (1, 1), "SAME",
          dimension_numbers=("NHWC", "HWIO", "NHWC")))[0])
    return tuple(maps)

  def gram_matrices(self, image: jax.Array) -> tuple[jax.Array, ...]:
    """Gram matrices G_k = F_k^T F_k / (H_k W_k), float [n, n] per scale, of
    one image [H, W, C]."""
    return tuple(_gram(f) for f in self.feature_maps(image))


def _gram(feature_map: jax.Array) -> jax.Array:
  flat = feature_map.reshape(-1, feature_map.shape[-1])
  return flat.T @ flat / flat.shape[0]


def random_network(config: StyleTransferConfig,
                   channels: int) -> RandomNetwork:
  """The random network of ``config`` for images with ``channels`` channels."""
  key = jax.random.PRNGKey(config.network_seed)
  size, count = config.kernel_size, config.filters_per_scale
  banks = []
  for index in range(len(config.scales)):
    weights = jax.random.normal(jax.random.fold_in(key, index),
                                (size, size, channels, count))
    weights = weights - weights.mean(axis=(0, 1, 2), keepdims=True)
    banks.append(weights / jnp.linalg.norm(weights.reshape(-1, count), axis=0))
  return RandomNetwork(tuple(banks), config.scales)


def _transfer_one(content: jax.Array, style_grams: tuple[jax.Array, ...],
                  network: RandomNetwork,
                  config: StyleTransferConfig) -> jax.Array:
  """Restyles one float image [H, W, C]; returns float [H, W, C] in [0, 1]."""
  content_features = network.feature_maps(content)
  optimizer = optax.adam(config.learning_rate)

  def loss(x):
    features = network.feature_maps(x)
    content_loss = sum(jnp.mean((f - g) ** 2)
                       for f, g in zip(features, content_features))
    style_loss = sum(jnp.mean((_gram(f) - s) ** 2)
                     for f, s in zip(features, style_grams))
    return (config.content_weight * content_loss +
            config.style_weight * style_loss)

  def step(_, carry):
    x, opt_state = carry
    updates, opt_state = optimizer.update(jax.grad(loss)(x), opt_state)
    return jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0), opt_state

  x, _ = jax.lax.fori_loop(0, config.steps, step,
                           (content, optimizer.init(content)))
  return x


def _check_inputs(content: np.ndarray, style: np.ndarray) -> None:
  if content.ndim != 4 or content.dtype != np.uint8:
    raise ValueError(
        f"content images must be uint8 [N, H, W, C], got {content.dtype} "
        f"{content.shape}.")
  if style.shape != content.shape[1:]:
    raise ValueError(
        f"the style image has shape {style.shape} but the content images "
        f"{content.shape[1:]}; bring it to the content's shape with "
        "jaxwm.watermark.move.style_images.load_style_image.")
  if not np.all(np.isfinite(style)) or style.min() < 0 or style.max() > 1:
    raise ValueError("the style image must be float in [0, 1]; divide uint8 "
                     "pixels by 255.")


def style_transfer(content: np.ndarray, style: np.ndarray,
                   config: StyleTransferConfig = StyleTransferConfig()
                   ) -> np.ndarray:
  """Restyles ``content`` after ``style`` (module docstring).

  Args:
    content: uint8 [N, H, W, C], the images to transform.
    style: float [H, W, C] in [0, 1], the style image at the content's shape.
    config: the transform's hyper-parameters.

  Returns:
    uint8 [N, H, W, C], the stylised images (labels are the caller's to
    keep).
  """
  content = np.asarray(content)
  style = np.asarray(style, np.float32)
  _check_inputs(content, style)
  network = random_network(config, content.shape[-1])
  style_grams = network.gram_matrices(jnp.asarray(style))
  transfer = compiler.jit(jax.vmap(
      lambda c: _transfer_one(c, style_grams, network, config)))
  batch = config.batch_size
  outputs = []
  for start in range(0, content.shape[0], batch):
    chunk = content[start:start + batch].astype(np.float32) / 255.0
    pad = batch - chunk.shape[0]
    if pad:  # one compiled shape for every chunk
      chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]),
                                              np.float32)])
    outputs.append(np.asarray(transfer(chunk))[:batch - pad])
  stylised = np.concatenate(outputs) if outputs else np.zeros(
      content.shape, np.float32)
  return np.round(stylised * 255.0).astype(np.uint8)


def transfer_fingerprint(content: np.ndarray, style: np.ndarray,
                         config: StyleTransferConfig) -> str:
  """Hex SHA-256 of everything :func:`style_transfer`'s output depends on."""
  digest = hashlib.sha256()
  for array in (np.asarray(content), np.asarray(style, np.float32)):
    digest.update(json.dumps([str(array.dtype), array.shape]).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
  return digest.hexdigest()


def cached_style_transfer(content: np.ndarray, style: np.ndarray,
                          config: StyleTransferConfig,
                          cache_dir: str) -> np.ndarray:
  """:func:`style_transfer`, stored in ``cache_dir`` and reused.

  The output is saved with :func:`jaxwm.secure_files.save` under
  ``cache_dir/stylised-<first 16 hex digits of the fingerprint>``, with the
  whole fingerprint (:func:`transfer_fingerprint`) in its metadata; a cached
  file is used only when its manifest's SHA-256 hashes and the whole
  fingerprint match, so a changed image, style or setting never restores.
  """
  fingerprint = transfer_fingerprint(content, style, config)
  prefix = os.path.join(cache_dir, f"stylised-{fingerprint[:16]}")
  if os.path.exists(prefix + ".manifest.json"):
    arrays, metadata = secure_files.load(prefix)
    if (metadata.get("kind") == _CACHE_FORMAT and
        metadata.get("fingerprint") == fingerprint and
        "images" in arrays):
      return arrays["images"]
  stylised = style_transfer(content, style, config)
  secure_files.save(prefix, {"images": stylised},
                    {"kind": _CACHE_FORMAT, "fingerprint": fingerprint,
                     "config": config.to_dict()})
  return stylised


def make_style_transform(style: np.ndarray,
                         config: StyleTransferConfig = StyleTransferConfig(),
                         cache_dir: str | None = None) -> ImageTransform:
  """The ``images -> images`` transform MOVE embeds, cached if asked.

  Args:
    style: float [H, W, C] in [0, 1] (:func:`style_images.load_style_image`).
    config: the transform's hyper-parameters.
    cache_dir: where stylised images are kept (None: no cache).
  """
  style = np.asarray(style, np.float32)
  if cache_dir is None:
    return lambda images: style_transfer(images, style, config)
  return lambda images: cached_style_transfer(images, style, config,
                                              cache_dir)

