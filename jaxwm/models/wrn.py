"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis, 2016, Sec. 2).

A 3x3 conv with 16 channels, then three groups of (d - 4) / 6 pre-activation
basic blocks (BN-ReLU-conv3x3-[dropout]-BN-ReLU-conv3x3) with 16k, 32k and
64k channels, the last two groups halving the spatial size, then BN-ReLU,
global average pooling and the classifier. WRN-28-10 has 36,479,194
parameters for 10 classes and 3 input channels.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.models import common, cpu_fusion, resnet

STEM_WIDTH = 16
GROUP_WIDTHS = (16, 32, 64)


class PreActBlock(resnet.ResidualBlock):
  """Pre-activation wide basic block (Zagoruyko & Komodakis, Fig. 1d).

  Input [B, H, W, C_in]; output [B, ceil(H / strides), ceil(W / strides),
  features]. When the shape changes the shortcut is a 1x1 conv of the
  pre-activated input.
  """

  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    activated = cpu_fusion.relu(common.batch_norm(train, self.dtype)(x))
    if self.needs_projection(x):
      x = self.conv(1, self.strides, name="shortcut_conv")(activated)
    y = self.conv(3, self.strides)(activated)
    y = cpu_fusion.relu(common.batch_norm(train, self.dtype)(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = self.conv(3)(y)
    return x + y


class WideResNet(nn.Module):
  """WRN-``depth``-``widen_factor``.

  Input float [B, H, W, C] in [0, 1]; output float32 logits
  [B, num_classes]. Sows the output of group i as ``block{i}`` and
  ``features`` [B, 64 * widen_factor]. With ``dropout_rate`` > 0 and
  ``train=True`` a ``"dropout"`` rng is needed.
  """

  num_classes: int
  depth: int
  widen_factor: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  # As ResNet's (jaxwm.models.resnet.ResNet.prunes_pooled_stage).
  prunes_pooled_stage: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 4) % 6 or self.depth < 10:
      raise ValueError(
          f"WRN depth {self.depth} is not 6n + 4 with n >= 1; use e.g. 16 or "
          "28.")
    blocks = (self.depth - 4) // 6
    x = common.normalize(x, self.dtype)
    x = nn.Conv(STEM_WIDTH, (3, 3), use_bias=False, dtype=self.dtype,
                name="stem_conv")(x)
    for group, width in enumerate(GROUP_WIDTHS, start=1):
      for block in range(blocks):
        strides = 2 if group > 1 and block == 0 else 1
        x = PreActBlock(width * self.widen_factor, strides, self.dtype,
                        self.dropout_rate)(x, train)
      self.sow("intermediates", f"block{group}", x)
    x = cpu_fusion.relu(
        common.batch_norm(train, self.dtype, name="final_bn")(x))
    return common.classifier_head(jnp.mean(x, axis=(1, 2)), self.num_classes,
                                  self.dtype, self)


wrn16_4 = functools.partial(WideResNet, depth=16, widen_factor=4)
wrn28_10 = functools.partial(WideResNet, depth=28, widen_factor=10)
