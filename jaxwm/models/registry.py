"""Models by name: ``get_model("resnet18", num_classes=10)``."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxwm.models import cnn, resnet, vgg, wrn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn.CNN,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "vgg16_bn": vgg.vgg16_bn,
    "vgg19_bn": vgg.vgg19_bn,
    "wrn16_4": wrn.wrn16_4,
    "wrn28_10": wrn.wrn28_10,
}


def register(name: str, constructor: Callable[..., nn.Module]) -> None:
  """Adds ``constructor(num_classes=..., dtype=..., **kwargs)`` as ``name``."""
  _REGISTRY[name] = constructor


def model_names() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def get_model(name: str, num_classes: int, dtype: Any = jnp.float32,
              **kwargs) -> nn.Module:
  """Builds the registered model ``name``.

  Args:
    name: one of :func:`model_names`.
    num_classes: K, the width of the logits.
    dtype: compute dtype (``jnp.bfloat16`` for mixed precision); parameters
      are float32 either way.
    **kwargs: model-specific fields (e.g. ``width`` for ``cnn``).
  """
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown model {name!r}; choose one of {', '.join(model_names())}.")
  if isinstance(dtype, str):
    dtype = jnp.dtype(dtype)
  return _REGISTRY[name](num_classes=num_classes, dtype=dtype, **kwargs)
