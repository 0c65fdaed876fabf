"""CIFAR-style residual networks: ResNet-18/34 (4 stages, 64-512 wide) and ResNet-20/56 (3 stages, 16-64)."""

from __future__ import annotations

import torch
from torch import nn

from archcompress.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: identity, or 1x1 conv-BN projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem (no max-pool, so small images keep their resolution), residual stages, global pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, widths: list[int], blocks_per_stage: list[int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks_per_stage, strict=True)):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w0, H, W)
        x = self.layers(x)  # (B, w_last, H / 2^(stages-1), ...)
        return self.fc(self.flatten(self.pool(x)))


def _scaled(widths: list[int], width: float) -> list[int]:
    return [max(1, round(w * width)) for w in widths]


@register_model("resnet18", "CIFAR ResNet-18: 4 stages of 2 basic blocks, 64-512 channels (~11M params)")
def resnet18(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return CifarResNet(input_shape[0], num_classes, _scaled([64, 128, 256, 512], width), [2, 2, 2, 2])


@register_model("resnet34", "CIFAR ResNet-34: 4 stages of 3/4/6/3 basic blocks, 64-512 channels (~21M params)")
def resnet34(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return CifarResNet(input_shape[0], num_classes, _scaled([64, 128, 256, 512], width), [3, 4, 6, 3])


@register_model("resnet20", "CIFAR ResNet-20 (He et al.): 3 stages of 3 blocks, 16-64 channels (~0.27M params)")
def resnet20(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return CifarResNet(input_shape[0], num_classes, _scaled([16, 32, 64], width), [3, 3, 3])


@register_model("resnet56", "CIFAR ResNet-56 (He et al.): 3 stages of 9 blocks, 16-64 channels (~0.86M params)")
def resnet56(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return CifarResNet(input_shape[0], num_classes, _scaled([16, 32, 64], width), [9, 9, 9])
