"""Shared fixtures for the space tests: teachers (zoo, torchvision, hand-written) and cached spaces.

Spaces are cached per test module: tracing is cheap, but building teachers like VGG-16-BN is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from archcompress.models import create_model
from archcompress.runtime import torch_threads
from archcompress.space import CompressionSpace

# (reference, per-sample input shape); the ids double as test ids
ZOO_CASES = [
    ("resnet18", (3, 32, 32)),
    ("resnet34", (3, 32, 32)),
    ("resnet20", (3, 32, 32)),
    ("resnet56", (3, 32, 32)),
    ("vgg11", (1, 28, 28)),
    ("vgg13", (3, 32, 32)),
    ("vgg16", (1, 8, 8)),
    ("vgg19", (3, 32, 32)),
    ("lenet5", (1, 28, 28)),
    ("mlp", (1, 8, 8)),
    ("cnn1d", (1, 40)),
]
TORCHVISION_FAST = [
    ("torchvision:resnet18", (3, 32, 32)),
    ("torchvision:resnet34", (3, 32, 32)),
    ("torchvision:resnet50", (3, 32, 32)),
    ("torchvision:mobilenet_v2", (3, 32, 32)),
    ("torchvision:resnet18", (3, 224, 224)),
    ("torchvision:mobilenet_v2", (3, 224, 224)),
    # squeeze-and-excitation gates inside residual bodies, stochastic depth, x.mean([2, 3])
    ("torchvision:mobilenet_v3_small", (3, 32, 32)),
    ("torchvision:efficientnet_b0", (3, 32, 32)),
    ("torchvision:regnet_y_400mf", (3, 32, 32)),
    ("torchvision:mnasnet0_5", (3, 32, 32)),
    # concatenation along channels: dense blocks, Fire modules
    ("torchvision:densenet121", (3, 32, 32)),
    ("torchvision:squeezenet1_1", (3, 64, 64)),
    # channel split + concatenation + channel shuffle
    ("torchvision:shufflenet_v2_x0_5", (3, 64, 64)),
]
# big enough that a handful of builds and forwards take seconds each
TORCHVISION_SLOW = [
    ("torchvision:vgg11_bn", (3, 32, 32)),
    ("torchvision:vgg16_bn", (3, 32, 32)),
    ("torchvision:resnet34", (3, 224, 224)),
    ("torchvision:resnet50", (3, 224, 224)),
    ("torchvision:vgg11_bn", (3, 224, 224)),
    ("torchvision:vgg16_bn", (3, 224, 224)),
    ("torchvision:convnext_tiny", (3, 32, 32)),
]


class FunctionalNet(nn.Module):
    """A functional forward: F.relu, a residual ``x + y``, F.max_pool2d, ``view`` and a classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.fc = nn.Linear(24 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        y = F.relu(self.conv2(x))
        x = x + y
        x = F.max_pool2d(self.conv3(x), 2)  # (B, 24, 8, 8)
        x = x.view(x.size(0), -1)
        return self.fc(x)


class FlattenNet(nn.Module):
    """``torch.flatten`` and a functional residual whose shortcut is a projection."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.body1 = nn.Conv2d(8, 12, 3, padding=1)
        self.body2 = nn.Conv2d(12, 16, 3, padding=1)
        self.proj = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.body2(F.relu(self.body1(x))) + self.proj(x)
        x = F.adaptive_avg_pool2d(x, 4)
        return self.fc(torch.flatten(x, 1))


class SEResidualNet(nn.Module):
    """Written as a user would: an inverted residual with squeeze-and-excitation (``y * gate``) inside its
    body, stochastic depth on the residual, a residual nested inside another one, and ``x.mean([2, 3])``."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.expand = nn.Conv2d(16, 48, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(48)
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48, bias=False)
        self.dw_bn = nn.BatchNorm2d(48)
        self.se_reduce = nn.Conv2d(48, 12, 1)
        self.se_expand = nn.Conv2d(12, 48, 1)
        self.project = nn.Conv2d(48, 16, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(16)
        self.drop_path = StochasticDepth(0.2, "row")
        self.inner_a = nn.Conv2d(16, 16, 3, padding=1)
        self.inner_b = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.stem_bn(self.stem(x)))  # (B, 16, 8, 8) for 16x16 inputs
        y = F.hardswish(self.expand_bn(self.expand(x)))  # (B, 48, 8, 8)
        y = F.hardswish(self.dw_bn(self.dw(y)))
        gate = F.adaptive_avg_pool2d(y, 1)  # (B, 48, 1, 1)
        gate = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(gate))))
        y = y * gate
        y = self.project_bn(self.project(y))  # (B, 16, 8, 8)
        x = x + self.drop_path(y)
        z = F.silu(self.inner_a(x))
        z = z + F.gelu(self.inner_b(z))  # a residual inside a residual body
        x = x + z
        x = F.relu(self.head(x))  # (B, 32, 8, 8)
        return self.fc(x.mean([2, 3]))


class GatedNet(nn.Module):
    """An element-wise gate of the same shape as its value, ``conv(x) * sigmoid(x)``, and a keepdim mean."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.conv(x) * torch.sigmoid(x)
        x = torch.mean(x, dim=(-2, -1), keepdim=True)  # (B, 8, 1, 1)
        return self.fc(torch.flatten(x, 1))


class DenseLayer(nn.Module):
    """BN-ReLU-conv on the concatenation of every earlier output, as DenseNet's dense layers."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(F.relu(self.norm(torch.cat(features, 1))))


class DenseNetLike(nn.Module):
    """Written as a user would: a dense block keeping a list of features, a transition, a Fire-like module
    (``cat([e1(s), e3(s)])``) and a classifier on the concatenation."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layers = nn.ModuleList([DenseLayer(16 + 8 * i, 8) for i in range(3)])
        self.norm = nn.BatchNorm2d(40)
        self.transition = nn.Conv2d(40, 24, 1)
        self.squeeze = nn.Conv2d(24, 12, 1)
        self.expand1 = nn.Conv2d(12, 16, 1)
        self.expand3 = nn.Conv2d(12, 16, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]  # (B, 16, 16, 16)
        for layer in self.layers:
            features.append(layer(features))  # + (B, 8, 16, 16) each
        x = F.relu(self.norm(torch.cat(features, 1)))  # (B, 40, 16, 16)
        x = F.avg_pool2d(self.transition(x), 2)  # (B, 24, 8, 8)
        s = F.relu(self.squeeze(x))
        x = torch.cat([F.relu(self.expand1(s)), F.relu(self.expand3(s))], dim=1)  # (B, 32, 8, 8)
        return self.fc(torch.flatten(F.max_pool2d(x, 2), 1))


class ShuffleNetLike(nn.Module):
    """Written as a user would: ``x.chunk(2, dim=1)``, a branch on one half, ``torch.cat``, a channel shuffle
    by view-transpose-view, then an uneven ``torch.split`` whose pieces are concatenated the other way round."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branch = nn.Sequential(
            nn.Conv2d(8, 12, 1),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.Conv2d(12, 12, 3, padding=1, groups=12),
            nn.BatchNorm2d(12),
            nn.Conv2d(12, 8, 1),
            nn.ReLU(),
        )
        self.tail = nn.Conv2d(10, 10, 1)
        self.head = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, H, W)
        left, right = x.chunk(2, dim=1)
        x = torch.cat((left, self.branch(right)), dim=1)
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)  # channel shuffle
        first, second = torch.split(x, [6, 10], dim=1)
        x = torch.cat([self.tail(second), first], 1)
        return self.fc(F.relu(self.head(x)).mean((2, 3)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block as a user writes it: depthwise 7x7, permute to channels-last, LayerNorm, Linear,
    GELU, Linear, permute back, layer scale, and an identity residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        y = self.gamma * y  # per-channel layer scale, channels-last
        return x + y.permute(0, 3, 1, 2)  # (B, C, H, W)


class ConvNeXtLike(nn.Module):
    """A patchify stem, a channels-first LayerNorm written with permutes, two ConvNeXt blocks and a head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, stride=2)
        self.stem_norm = nn.LayerNorm(16, eps=1e-6)
        self.blocks = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16))
        self.head_norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stem_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.blocks(x)
        return self.fc(self.head_norm(x.mean([-2, -1])))


def sequential_net(num_classes: int = 10) -> nn.Module:
    """A plain ``nn.Sequential`` with every layer type in order."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.AvgPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),  # depthwise
        nn.BatchNorm2d(32),
        nn.GELU(),
        nn.Conv2d(32, 40, 3, padding=1, groups=4),  # grouped: its channels stay fixed
        nn.SiLU(),
        nn.Dropout2d(0.1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(40, 64),
        nn.BatchNorm1d(64),
        nn.Tanh(),
        nn.Linear(64, num_classes),
    )


def sequential_1d(num_classes: int = 10) -> nn.Module:
    """A 1-D conv net with pooling, written as ``nn.Sequential``."""
    return nn.Sequential(
        nn.Conv1d(1, 16, 5, padding=2),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool1d(2),
        nn.Flatten(),
        nn.Linear(32 * 10, num_classes),
    )


USER_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "functional": (FunctionalNet, (3, 32, 32)),
    "flatten": (FlattenNet, (1, 16, 16)),
    "sequential": (sequential_net, (3, 16, 16)),
    "sequential_1d": (sequential_1d, (1, 40)),
    "se_residual": (SEResidualNet, (3, 16, 16)),
    "gated": (GatedNet, (3, 8, 8)),
    "dense": (DenseNetLike, (3, 16, 16)),
    "shuffle": (ShuffleNetLike, (3, 8, 8)),
    "convnext": (ConvNeXtLike, (3, 16, 16)),
}


def _case_id(ref: str, shape: tuple[int, ...]) -> str:
    return f"{ref}-{'x'.join(map(str, shape))}"


# (reference, shape, hypothesis examples) for every supported teacher; the big ones are marked slow
MODEL_CASES = [
    *[pytest.param((ref, shape, 10), id=_case_id(ref, shape)) for ref, shape in ZOO_CASES],
    *[pytest.param((name, shape, 10), id=name) for name, (_, shape) in USER_CASES.items()],
    *[pytest.param((ref, shape, 5), id=_case_id(ref, shape)) for ref, shape in TORCHVISION_FAST],
    *[
        pytest.param((ref, shape, 3), id=_case_id(ref, shape), marks=pytest.mark.slow)
        for ref, shape in TORCHVISION_SLOW
    ],
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``model_case`` run once per supported teacher (like timm's registry-wide tests)."""
    if "model_case" in metafunc.fixturenames:
        metafunc.parametrize("model_case", MODEL_CASES)


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so that copying the wrong channels would show."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)  # type: ignore[union-attr]
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def make_teacher(ref: str, shape: tuple[int, ...]) -> nn.Module:
    """A teacher in eval mode with seeded weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    model = USER_CASES[ref][0]() if ref in USER_CASES else create_model(ref, shape, 10)
    return _randomise_bn(model, 0).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on this 2-core machine, two threads are many times slower for these small nets."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def teacher_space() -> Callable[..., tuple[nn.Module, CompressionSpace]]:
    """``get(ref, shape, **options) -> (teacher, space)``, cached per test module (big teachers are freed after)."""
    cache: dict[tuple[Any, ...], tuple[nn.Module, CompressionSpace]] = {}

    def get(ref: str, shape: tuple[int, ...], **options: Any) -> tuple[nn.Module, CompressionSpace]:
        key = (ref, shape, tuple(sorted(options.items())))
        if key not in cache:
            teacher = make_teacher(ref, shape)
            cache[key] = (teacher, CompressionSpace.from_model(teacher, shape, **options))
        return cache[key]

    return get
