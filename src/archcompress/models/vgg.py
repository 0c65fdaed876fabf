"""VGG-11/13/16/19 with batch norm, with the pooling layout adapted to the input size."""

from __future__ import annotations

import torch
from torch import nn

from archcompress.models.registry import register_model

# "M" is a 2x2 max-pool; numbers are conv output widths (Simonyan & Zisserman, configurations A, B, D, E).
_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
              "M"],
}  # fmt: skip


class VGG(nn.Module):
    """Conv-BN-ReLU stack with max-pools, then flatten and a linear classifier."""

    def __init__(self, features: nn.Sequential, flat_features: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(flat_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))  # (B, num_classes)


def build_vgg(config: str, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> VGG:
    """Build a VGG; a max-pool is skipped when the feature map is already smaller than 2x2.

    So 32x32 inputs get all five pools (as on CIFAR), 28x28 gets four and 8x8 three; the classifier
    reads the flattened final map, whose size follows from the pools kept.
    """
    channels, height, width_px = input_shape
    layers: list[nn.Module] = []
    for item in _CONFIGS[config]:
        if item == "M":
            if min(height, width_px) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width_px = height // 2, width_px // 2
            continue
        out = max(1, round(int(item) * width))
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        channels = out
    return VGG(nn.Sequential(*layers), channels * height * width_px, num_classes)


def _register(config: str, millions: str) -> None:
    @register_model(config, f"{config.upper()} with batch norm, pools adapted to the input size ({millions})")
    def factory(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
        return build_vgg(config, input_shape, num_classes, width)

    factory.__name__ = config


for _name, _size in (("vgg11", "~9M"), ("vgg13", "~9M"), ("vgg16", "~15M"), ("vgg19", "~20M")):
    _register(_name, f"{_size} params on 32x32")
