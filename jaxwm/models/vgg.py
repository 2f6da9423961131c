"""CIFAR-style VGG-16/19 with batch normalisation (Simonyan & Zisserman, 2015).

Five stages of 3x3 conv-BN-ReLU layers, each followed by a 2x2 max-pool with
'SAME' padding, so a 1x1 map stays 1x1 and inputs as small as 8x8 work; the
last map is globally average-pooled (a no-op on 32x32 inputs, where it is
already 1x1) and fed to a single linear classifier. Convs have no bias: the
BN that follows each one makes a bias redundant.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.models import common, cpu_fusion, pooling

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
                (512, 512, 512))
VGG19_STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


class VGG(nn.Module):
  """VGG-BN with stages of conv widths ``stages``.

  Input float [B, H, W, C] in [0, 1]; output float32 logits
  [B, num_classes]. Sows the pooled output of stage i as ``block{i}``
  ([B, ceil(H / 2^i), ceil(W / 2^i), stages[i-1][-1]]) and ``features``
  [B, stages[-1][-1]].
  """

  num_classes: int
  stages: Sequence[Sequence[int]]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = common.normalize(x, self.dtype)
    for stage, widths in enumerate(self.stages, start=1):
      for width in widths:
        x = nn.Conv(width, (3, 3), use_bias=False, dtype=self.dtype)(x)
        x = cpu_fusion.relu(common.batch_norm(train, self.dtype)(x))
      x = pooling.max_pool(x, 2)
      self.sow("intermediates", f"block{stage}", x)
    return common.classifier_head(jnp.mean(x, axis=(1, 2)), self.num_classes,
                                  self.dtype, self)


vgg16_bn = functools.partial(VGG, stages=VGG16_STAGES)
vgg19_bn = functools.partial(VGG, stages=VGG19_STAGES)
