"""A small convolutional network that trains in minutes on a CPU."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.models import common, cpu_fusion, pooling


class CNN(nn.Module):
  """Two conv blocks (``convs_per_block`` x conv-BN-ReLU, then max-pool) and a
  dense layer.

  Input float [B, H, W, C] in [0, 1]; output logits [B, num_classes]. Sows
  ``block1``, ``block2`` (feature maps) and ``features`` [B, dense_width].
  """

  num_classes: int
  width: int = 32
  convs_per_block: int = 1
  dense_width: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = common.normalize(x, self.dtype)
    for block, channels in enumerate((self.width, 2 * self.width), start=1):
      for _ in range(self.convs_per_block):
        x = nn.Conv(channels, (3, 3), use_bias=False, dtype=self.dtype)(x)
        x = cpu_fusion.relu(common.batch_norm(train, self.dtype)(x))
      x = pooling.max_pool(x, 2)
      self.sow("intermediates", f"block{block}", x)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.dense_width, dtype=self.dtype)(x)
    x = cpu_fusion.relu(x)
    return common.classifier_head(x, self.num_classes, self.dtype, self)
