"""Small teachers for the offline data sets: a LeNet-5-like CNN, an MLP and a 1-D CNN for MNIST-1D."""

from __future__ import annotations

import math

import torch
from torch import nn

from archcompress.models.registry import register_model


@register_model("lenet5", "LeNet-5-like CNN: two 5x5 conv + max-pool stages, then 120-84 fully connected")
def lenet5(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """'Same'-padded 5x5 convolutions so that 8x8 digits work too; a pool is skipped below 2x2."""
    channels, height, width_px = input_shape
    c1, c2 = max(1, round(6 * width)), max(1, round(16 * width))
    layers: list[nn.Module] = []
    for in_ch, out_ch in ((channels, c1), (c1, c2)):
        layers += [nn.Conv2d(in_ch, out_ch, 5, padding=2), nn.ReLU()]
        if min(height, width_px) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width_px = height // 2, width_px // 2
    f1, f2 = max(1, round(120 * width)), max(1, round(84 * width))
    layers += [
        nn.Flatten(),
        nn.Linear(c2 * height * width_px, f1),
        nn.ReLU(),
        nn.Linear(f1, f2),
        nn.ReLU(),
        nn.Linear(f2, num_classes),
    ]
    return _relu_init(nn.Sequential(*layers))


def _relu_init(model: nn.Module) -> nn.Module:
    """He (fan-in) initialisation: PyTorch's default init makes these BN-free ReLU nets start very slowly."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


@register_model("mlp", "Multi-layer perceptron: flatten, hidden layers 512-256 with ReLU", input_rank=None)
def mlp(
    input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (512, 256), width: float = 1.0
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for size in hidden:
        scaled = max(1, round(int(size) * width))
        layers += [nn.Linear(features, scaled), nn.ReLU()]
        features = scaled
    layers.append(nn.Linear(features, num_classes))
    return _relu_init(nn.Sequential(*layers))


class ConvNet1d(nn.Module):
    """Conv1d-BN-ReLU stages (the later ones strided), flatten, a 512-wide hidden layer and the classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        channels, length = input_shape
        widths = [max(1, round(w * width)) for w in (64, 128, 256, 256)]
        layers: list[nn.Module] = []
        for index, out in enumerate(widths):
            kernel, stride = (5, 1) if index == 0 else (3, 2)
            layers += [
                nn.Conv1d(channels, out, kernel, stride=stride, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(),
            ]
            channels = out
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        self.features = nn.Sequential(*layers)
        hidden = max(1, round(512 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * length, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, C, L) -> (B, num_classes)


@register_model("cnn1d", "1-D CNN for MNIST-1D: 4 conv stages 64-256, 512 hidden (~1M params)", input_rank=2)
def cnn1d(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return ConvNet1d(input_shape, num_classes, width)
