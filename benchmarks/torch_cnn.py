"""The PyTorch reference of ``jaxwm.models.get_model("cnn")``.

Two blocks of 3x3 conv (no bias) - BatchNorm - ReLU - 2x2 max-pool (odd
sizes rounded up, as the jaxwm model's 'SAME' pooling does), then a dense
layer with ReLU and the classifier; the input is standardised inside the
model as jaxwm does.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_MEAN = 0.5
INPUT_STD = 0.25


class CNN(nn.Module):
  """Input float [B, C, H, W] in [0, 1]; output logits [B, num_classes]."""

  def __init__(self, in_channels: int, image_size: tuple[int, int],
               num_classes: int, width: int = 32, dense_width: int = 256):
    super().__init__()
    layers = []
    height, width_px = image_size
    channels = in_channels
    for out_channels in (width, 2 * width):
      layers += [nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                 nn.BatchNorm2d(out_channels, momentum=0.1, eps=1e-5),
                 nn.ReLU(inplace=True),
                 nn.MaxPool2d(2, ceil_mode=True)]
      channels = out_channels
      height, width_px = -(-height // 2), -(-width_px // 2)
    self.features = nn.Sequential(*layers)
    self.dense = nn.Linear(channels * height * width_px, dense_width)
    self.head = nn.Linear(dense_width, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.features((x - INPUT_MEAN) / INPUT_STD)
    x = torch.relu(self.dense(torch.flatten(x, 1)))
    return self.head(x)
