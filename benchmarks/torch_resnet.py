"""The PyTorch reference model for the benchmarks: a CIFAR ResNet-18 in the
torchvision style (3x3 stem with stride 1, no max-pool, BasicBlocks), the
same architecture as ``jaxwm.models.get_model("resnet18")``."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_planes: int, planes: int, stride: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(
          nn.Conv2d(in_planes, planes, 1, stride, bias=False),
          nn.BatchNorm2d(planes))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = torch.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):

  def __init__(self, blocks: tuple[int, ...], num_classes: int):
    super().__init__()
    self.in_planes = 64
    self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    stages = []
    for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
      strides = [1 if index == 0 else 2] + [1] * (count - 1)
      layers = []
      for stride in strides:
        layers.append(BasicBlock(self.in_planes, planes, stride))
        self.in_planes = planes
      stages.append(nn.Sequential(*layers))
    self.stages = nn.Sequential(*stages)
    self.linear = nn.Linear(512, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = torch.relu(self.bn1(self.conv1(x)))
    out = self.stages(out)
    out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
    return self.linear(out)


def resnet18(num_classes: int = 10) -> ResNet:
  return ResNet((2, 2, 2, 2), num_classes)


def reference_setup(num_classes: int) -> tuple[torch.device, ResNet]:
  """The device and a fresh ResNet-18 of the PyTorch reference, set up as a
  strong PyTorch user would: cuDNN autotuning, TF32 off (the jaxwm side
  computes fp32 in full precision), ``channels_last``."""
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  model = resnet18(num_classes).to(device, memory_format=torch.channels_last)
  return device, model
