"""Tracing teachers into units, blocks and channel groups; clear errors for what is not supported."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space import CompressionSpace
from archcompress.space.ir import ConvSpec


def _blocks(space: CompressionSpace) -> list[tuple[int, bool]]:
    """(block unit index, has identity shortcut) for every residual block."""
    return [(u.index, not u.shortcut) for u in space.units if u.kind == "block"]


@pytest.mark.parametrize(
    ("ref", "shape", "identity", "projection"),
    [
        ("resnet20", (3, 32, 32), 7, 2),
        ("resnet56", (3, 32, 32), 25, 2),
        ("resnet18", (3, 32, 32), 5, 3),
        ("torchvision:resnet50", (3, 32, 32), 12, 4),
        ("torchvision:mobilenet_v2", (3, 32, 32), 10, 0),
        ("vgg11", (1, 28, 28), 0, 0),
        ("functional", (3, 32, 32), 1, 0),
        ("flatten", (1, 16, 16), 0, 1),
    ],
)
def test_residual_blocks_are_found_from_the_graph(teacher_space, ref, shape, identity, projection) -> None:
    _, space = teacher_space(ref, shape)
    blocks = _blocks(space)
    assert sum(1 for _, ident in blocks if ident) == identity
    assert sum(1 for _, ident in blocks if not ident) == projection


def test_units_group_weighted_layer_with_its_norm_and_activation(teacher_space) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    kinds = [u.kind for u in space.units]
    # 8 conv-BN-ReLU units, 4 max-pools (28 -> 14 -> 7 -> 3 -> 1), flatten, classifier
    assert kinds.count("conv") == 8 and kinds.count("pool") == 4
    assert kinds[-2:] == ["flatten", "linear"]
    conv = space.units[0]
    assert [type(space.layers[i].spec).__name__ for i in conv.layers] == ["ConvSpec", "NormSpec", "ActSpec"]
    assert conv.in_shape == (1, 28, 28) and conv.out_shape == (64, 28, 28)


def test_block_units_list_body_then_shortcut_with_parent_links(teacher_space) -> None:
    _, space = teacher_space("torchvision:resnet50", (3, 32, 32))
    block = space.units[2]  # layer1.0: bottleneck with a projection (stride 1, 64 -> 256)
    assert block.kind == "block" and block.name == "layer1.0"
    assert [space.units[i].name for i in block.body] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert [space.units[i].name for i in block.shortcut] == ["layer1.0.downsample.0"]
    assert all(space.units[i].parent == block.index for i in (*block.body, *block.shortcut))
    assert block.params == sum(space.units[i].params for i in (*block.body, *block.shortcut))


def test_residual_channels_form_one_group(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    by_name = {u.name: u for u in space.units}
    stream = by_name["conv1"].shrink_group
    # the stem and every conv2 of stage 1 add into the same tensors
    assert stream is not None
    assert all(by_name[f"layers.0.{b}.conv2"].shrink_group == stream for b in range(3))
    assert all(by_name[f"layers.0.{b}.conv1"].shrink_group != stream for b in range(3))
    # stage 2: its projection shortcut and its conv2s share the new stream
    stage2 = by_name["layers.1.0.shortcut.0"].shrink_group
    assert stage2 not in (None, stream)
    assert all(by_name[f"layers.1.{b}.conv2"].shrink_group == stage2 for b in range(3))
    stream_group = space.groups[space.shrink_groups[stream]]
    assert stream_group.residual and not stream_group.fixed and stream_group.width == 16


def test_depthwise_conv_shares_its_producers_group(teacher_space) -> None:
    _, space = teacher_space("torchvision:mobilenet_v2", (3, 32, 32))
    depthwise = [u for u in space.units if u.kind == "conv" and space.layers[u.layers[0]].spec.depthwise]
    assert len(depthwise) == 17
    for unit in depthwise:
        producer = space.units[unit.index - 1]
        assert producer.kind == "conv" and unit.shrink_group == producer.shrink_group


def test_fixed_groups_input_logits_and_grouped_convs(teacher_space) -> None:
    _, space = teacher_space("sequential", (3, 16, 16))
    fixed = [g for g in space.groups if g.fixed]
    widths = sorted(g.width for g in fixed)
    # network input (3), logits (10), and the grouped conv's input (32) and output (40)
    assert widths == [3, 10, 32, 40]
    classifier = space.units[-1]
    assert classifier.kind == "linear" and classifier.shrink_group is None


def test_one_dimensional_nets_trace(teacher_space) -> None:
    _, space = teacher_space("cnn1d", (1, 40))
    conv = space.layers[space.units[0].layers[0]].spec
    assert isinstance(conv, ConvSpec) and conv.dim == 1 and conv.kernel == (5,)
    assert space.units[0].out_shape == (64, 40)


def test_tracing_leaves_the_teacher_unchanged(teacher_space) -> None:
    teacher, _ = teacher_space("resnet20", (3, 32, 32))
    teacher.train()
    stats = teacher.bn1.running_mean.clone()
    CompressionSpace.from_model(teacher, (3, 32, 32))
    assert teacher.training and all(m.training for m in teacher.modules())
    assert torch.equal(teacher.bn1.running_mean, stats)
    teacher.eval()


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.left(x), self.right(x)], dim=3)  # along the width: not a channel concatenation
        return self.fc(torch.flatten(x, 1))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x)
        return self.fc(y.flatten(1))


class _LayerScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(1, 4, 4))  # one weight per position: not a channel scale
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.conv(x) * self.gamma).flatten(1))


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:
            x = F.relu(x)
        return self.fc(x.flatten(1))


class _ThreeWay(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, padding=1)
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.fc((self.a(y) + self.b(y) + y).flatten(1))  # y feeds three operations


@pytest.mark.parametrize(
    ("model", "shape", "node", "module", "what"),
    [
        (_Concat(), (3, 4, 4), "cat", None, "torch.cat"),
        (_Attention(), (4, 8), "attn", "attn", "MultiheadAttention"),
        (_LayerScale(), (3, 4, 4), "mul", None, "a multiplication by a parameter of shape (1, 4, 4)"),
        (_ThreeWay(), (3, 4, 4), "stem", "stem", "a tensor used by 3 operations"),
    ],
)
def test_unsupported_models_name_node_module_and_line(model, shape, node, module, what) -> None:
    with pytest.raises(ArchcompressError) as info:
        CompressionSpace.from_model(model, shape)
    message = str(info.value)
    assert what in message
    if node:
        assert f"node {node!r}" in message
    if module:
        assert f"module {module!r}" in message
    assert re.search(r"test_trace\.py:\d+ `", message)  # the user's source line
    assert "supports" in message and "\n" not in message


def test_data_dependent_control_flow_is_reported_with_its_line() -> None:
    with pytest.raises(ArchcompressError) as info:
        CompressionSpace.from_model(_Branchy(), (3, 4, 4))
    message = str(info.value)
    assert "torch.fx cannot trace" in message and "if x.sum() > 0:" in message
    assert re.search(r"test_trace\.py:\d+", message) and "supports" in message


def test_wrong_input_shape_is_reported() -> None:
    with pytest.raises(ArchcompressError, match="fails on inputs of shape"):
        CompressionSpace.from_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 5))


def test_shared_weights_are_refused() -> None:
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv, nn.Flatten(), nn.Linear(48, 2))
    with pytest.raises(ArchcompressError, match="called twice"):
        CompressionSpace.from_model(model, (3, 4, 4))


def test_a_model_without_weighted_layers_is_refused() -> None:
    with pytest.raises(ArchcompressError, match="nothing to compress"):
        CompressionSpace.from_model(nn.Sequential(nn.Flatten()), (3, 2, 2))
