"""CIFAR-style ResNet-18/34 (He et al., 2016, "Deep Residual Learning").

The ImageNet stem (7x7 stride-2 conv and max-pool) is replaced by a single 3x3
stride-1 conv, so 8x8 to 32x32 inputs keep enough spatial resolution; the
four stages of BasicBlocks have 64, 128, 256 and 512 channels and the last
three halve the spatial size. For 10 classes and 3 input channels ResNet-18
has 11,173,962 parameters.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxwm.models import common, cpu_fusion

STAGE_WIDTHS = (64, 128, 256, 512)


class ResidualBlock(nn.Module):
  """Fields and helpers shared by the residual blocks of jaxwm models.

  Attributes:
    features: output channels.
    strides: spatial stride of the first conv (and of the shortcut).
    dtype: compute dtype.
  """

  features: int
  strides: int
  dtype: Any

  def conv(self, kernel: int, strides: int = 1,
           name: str | None = None) -> nn.Conv:
    """A bias-free ``kernel`` x ``kernel`` conv to ``features`` channels."""
    return nn.Conv(self.features, (kernel, kernel), (strides, strides),
                   use_bias=False, dtype=self.dtype, name=name)

  def needs_projection(self, x: jax.Array) -> bool:
    """Whether the shortcut must be a 1x1 conv to match the output shape."""
    return self.strides != 1 or x.shape[-1] != self.features


class BasicBlock(ResidualBlock):
  """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut, then ReLU.

  Input [B, H, W, C_in]; output [B, ceil(H / strides), ceil(W / strides),
  features]. The shortcut is a 1x1 conv + BN when the shape changes.
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = self.conv(3, self.strides)(x)
    y = cpu_fusion.relu(common.batch_norm(train, self.dtype)(y))
    y = self.conv(3)(y)
    y = common.batch_norm(train, self.dtype)(y)
    if self.needs_projection(x):
      x = self.conv(1, self.strides, name="shortcut_conv")(x)
      x = common.batch_norm(train, self.dtype, name="shortcut_bn")(x)
    return cpu_fusion.relu(x + y)


class ResNet(nn.Module):
  """CIFAR-style ResNet of BasicBlocks.

  Input float [B, H, W, C] in [0, 1]; output float32 logits
  [B, num_classes]. Sows the output of stage i as ``block{i}``
  ([B, H / 2^(i-1), W / 2^(i-1), 64 * 2^(i-1)], sizes rounded up) and the
  globally average-pooled ``features`` [B, 512].
  """

  num_classes: int
  stage_sizes: Sequence[int]
  dtype: Any = jnp.float32

  # Pruning (jaxwm.defenses.pruning) removes channels of the last stage's
  # output, which the head reads through global pooling: the last
  # convolution is in a residual branch that the shortcut bypasses.
  prunes_pooled_stage: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = common.normalize(x, self.dtype)
    x = nn.Conv(STAGE_WIDTHS[0], (3, 3), use_bias=False, dtype=self.dtype,
                name="stem_conv")(x)
    x = cpu_fusion.relu(common.batch_norm(train, self.dtype, name="stem_bn")(x))
    for stage, (width, blocks) in enumerate(
        zip(STAGE_WIDTHS, self.stage_sizes), start=1):
      for block in range(blocks):
        strides = 2 if stage > 1 and block == 0 else 1
        x = BasicBlock(width, strides, self.dtype)(x, train)
      self.sow("intermediates", f"block{stage}", x)
    return common.classifier_head(jnp.mean(x, axis=(1, 2)), self.num_classes,
                                  self.dtype, self)


resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
