"""Removing a strided convolution keeps its downsampling: an average pooling stands in, later shapes stay."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from archcompress.models import create_model
from archcompress.space import (
    Candidate,
    CompressionSpace,
    RemovalRules,
    count_params,
    load_student,
    measure_macs,
    save_student,
)
from archcompress.space.handlers import handler
from archcompress.space.ir import ConvSpec, FlattenSpec, LinearSpec, PoolSpec, ResidualSpec
from archcompress.space.options import SpaceOptions
from archcompress.space.rules import downsampling

CNN1D_SHAPE = (1, 40)
STRIDED = SpaceOptions(removable=("block", "body", "max-pool", "linear", "strided-conv"))


@pytest.fixture(scope="module")
def cnn1d() -> tuple[nn.Module, CompressionSpace]:
    torch.manual_seed(0)
    model = create_model("cnn1d", CNN1D_SHAPE, 10, {}).eval()
    return model, STRIDED.space_of(model, CNN1D_SHAPE)


def strided_units(space: CompressionSpace) -> list[int]:
    """Unit indices of the convs with a stride above 1."""
    return [
        u.index
        for u in space.units
        if u.kind == "conv" and max(getattr(space.layers[u.layers[0]].spec, "stride", (1,))) > 1
    ]


def without(space: CompressionSpace, units: list[int], ratio: float = 1.0) -> Candidate:
    """The uniform candidate at ``ratio`` with ``units`` removed."""
    keep = list(space.teacher_candidate().keep)
    for unit in units:
        position = space.units[unit].keep_index
        assert position is not None, f"unit {unit} is not removable"
        keep[position] = False
    return space.uniform_candidate(ratio, tuple(keep))


def linears(arch_layers: tuple[object, ...]) -> list[LinearSpec]:
    return [s for s in arch_layers if isinstance(s, LinearSpec)]


def exact(space: CompressionSpace, candidate: Candidate, shape: tuple[int, ...]) -> nn.Module:
    """Build the candidate and check that its analytic cost is the built module's."""
    result = space.build(candidate)
    assert result.params == count_params(result.module) == space.cost(candidate).params
    assert result.macs == measure_macs(result.module, shape) == space.cost(candidate).macs
    return result.module


@pytest.mark.parametrize("position", [0, 1, 2])
def test_removing_a_strided_conv_of_the_1d_cnn_keeps_the_linear_input_and_the_output(cnn1d, position) -> None:
    teacher, space = cnn1d
    unit = strided_units(space)[position]
    conv = space.layers[space.units[unit].layers[0]].spec
    assert isinstance(conv, ConvSpec) and conv.stride == (2,) and space.units[unit].removable
    candidate = without(space, [unit])
    arch = space.arch(candidate)
    pools = [s for s in arch.layers if isinstance(s, PoolSpec)]
    assert pools == [PoolSpec(dim=1, mode="avg", kernel=(3,), stride=(2,), padding=(1,), dilation=(1,))]
    assert linears(arch.layers)[0].in_features == linears(space.arch(space.teacher_candidate()).layers)[0].in_features
    module = exact(space, candidate, CNN1D_SHAPE)
    x = torch.randn(4, *CNN1D_SHAPE)
    module.eval()
    with torch.no_grad():
        assert module(x).shape == teacher(x).shape == (4, 10)
    cost, full = space.cost(candidate), space.teacher_cost
    assert cost.params == full.params - space.units[unit].params - _next_conv_saving(space, unit)
    assert cost.macs < full.macs  # every later layer runs at the teacher's resolution


def _next_conv_saving(space: CompressionSpace, unit: int) -> int:
    """Parameters the layer after the removed conv loses by reading the conv's input channels instead."""
    removed = space.layers[space.units[unit].layers[0]].spec
    assert isinstance(removed, ConvSpec)
    nxt = next(u for u in space.units[unit + 1 :] if u.kind in ("conv", "linear"))
    spec = space.layers[nxt.layers[0]].spec
    if isinstance(spec, ConvSpec):
        per_input = spec.out_channels * math.prod(spec.kernel)
    else:  # the flatten holds `length` positions per channel
        assert isinstance(spec, LinearSpec)
        per_input = spec.out_features * (spec.in_features // removed.out_channels)
    return per_input * (removed.out_channels - removed.in_channels)


def test_all_strided_convs_removed_keep_the_flatten_size_and_train_one_step(cnn1d, tmp_path) -> None:
    _, space = cnn1d
    candidate = without(space, strided_units(space), ratio=0.25)
    result = space.build(candidate)
    assert sum(isinstance(s, PoolSpec) for s in result.arch.layers) == 3
    flatten = next(p for p in space.plan(candidate).layers if isinstance(p.spec, FlattenSpec))
    assert flatten.in_shape == (16, 5)  # 64 x 0.25 channels at the teacher's final length
    exact(space, candidate, CNN1D_SHAPE)
    # weights: the first conv, its norm and the classifier are the teacher's kept channels; what reads the
    # first conv's channels in place of the last conv's (the hidden linear) starts fresh
    assert result.fresh_layers == ("layers.7",)
    model = result.module.train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, *CNN1D_SHAPE), torch.randint(0, 10, (8,))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    loaded = load_student(save_student(result, tmp_path / "student"))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.arch == result.arch


def test_the_layers_around_a_removed_strided_conv_keep_the_teachers_weights(cnn1d) -> None:
    teacher, space = cnn1d
    first = strided_units(space)[0]
    result = space.build(without(space, [first]))
    assert result.fresh_layers == ("layers.4", "layers.5")  # the next conv reads other channels, and its norm
    student = result.module.layers
    assert torch.equal(student[0].weight, teacher.features[0].weight)
    assert torch.equal(student[7].weight, teacher.features[9].weight)  # the last conv, untouched
    assert torch.equal(student[11].weight, teacher.classifier[1].weight)
    assert isinstance(student[3], nn.AvgPool1d) and not any(True for _ in student[3].parameters())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_any_removal_keeps_the_teachers_resolution_and_exact_counts(cnn1d, data: st.DataObject) -> None:
    _, space = cnn1d
    keep = data.draw(st.lists(st.booleans(), min_size=len(space.removable_units), max_size=len(space.removable_units)))
    ratios = data.draw(st.lists(st.sampled_from(space.ratios), min_size=len(space.shrink_groups),
                                max_size=len(space.shrink_groups)))  # fmt: skip
    candidate = Candidate(tuple(keep), tuple(ratios))
    assert space.check(candidate) is None  # removing any subset fits: the downsampling always stays
    plan = space.plan(candidate)
    flatten = next(p for p in plan.layers if isinstance(p.spec, FlattenSpec))
    assert flatten.in_shape[1:] == (5,)
    module = exact(space, candidate, CNN1D_SHAPE)
    module.eval()
    with torch.no_grad():
        assert module(torch.randn(2, *CNN1D_SHAPE)).shape == (2, 10)


@given(
    length=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(2, 4),
    dilation=st.integers(1, 3),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_the_pooling_has_the_convs_output_size(
    length: int, kernel: int, stride: int, dilation: int, data: st.DataObject
) -> None:
    span = dilation * (kernel - 1) + 1
    padding = data.draw(st.integers(0, span // 2))
    conv = ConvSpec(1, 2, 2, (kernel,), (stride,), (padding,), (dilation,))
    pool = downsampling(conv)
    assert pool is not None and handler(pool).params(pool) == 0
    if length + 2 * padding < span:
        return  # the conv itself has no output
    x = torch.randn(1, 2, length)
    expected = handler(conv).build(conv)(x).shape
    assert handler(pool).build(pool)(x).shape == expected
    assert (1, *handler(pool).out_shape(pool, (2, length))) == expected


def test_a_conv_padded_beyond_half_its_window_stays() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 4, 1, stride=2, padding=1),  # no pooling gives its output size: never removed
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 10),
    )
    space = CompressionSpace.from_model(model, (1, 16, 16), rules=RemovalRules(strided_conv=True))
    assert [space.units[u].name for u in space.removable_units] == ["2"]
    assert downsampling(space.layers[1].spec) is None


def test_a_2d_strided_conv_outside_residual_blocks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),  # 28 -> 14
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 14 -> 7
        nn.Conv2d(16, 16, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(2, 1)),  # (7, 7) -> (3, 7)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 3 * 7, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    ).eval()
    space = CompressionSpace.from_model(model, (1, 28, 28), rules=RemovalRules(strided_conv=True))
    down, tall = strided_units(space)
    candidate = without(space, [down, tall], ratio=0.5)
    arch = space.arch(candidate)
    assert [s for s in arch.layers if isinstance(s, PoolSpec) and s.mode == "avg"] == [
        PoolSpec(2, "avg", (3, 3), (2, 2), (1, 1), (1, 1)),
        PoolSpec(2, "avg", (5, 1), (2, 1), (1, 0), (1, 1)),  # the dilated window's span
    ]
    assert linears(arch.layers)[0].in_features == 8 * 3 * 7  # the first conv's channels at the teacher's size
    module = exact(space, candidate, (1, 28, 28))
    module.eval()
    with torch.no_grad():
        assert module(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.fixture(scope="module")
def resnet20() -> CompressionSpace:
    torch.manual_seed(0)
    model = create_model("resnet20", (3, 32, 32), 10, {}).eval()
    return STRIDED.space_of(model, (3, 32, 32))


def test_a_strided_body_conv_of_a_projection_block_goes_and_the_block_stays(resnet20, tmp_path) -> None:
    space = resnet20
    body_convs = [u for u in strided_units(space) if space.units[u].branch == "body"]
    shortcut_convs = [u for u in strided_units(space) if space.units[u].branch == "shortcut"]
    assert len(body_convs) == len(shortcut_convs) == 2
    assert all(space.units[u].removable for u in body_convs)
    assert not any(space.units[u].removable for u in shortcut_convs)
    projection_blocks = [u for u in space.units if u.kind == "block" and u.shortcut]
    assert projection_blocks and not any(block.removable for block in projection_blocks)
    candidate = without(space, body_convs, ratio=0.5)
    result = space.build(candidate)
    residuals = [s for s in result.arch.layers if isinstance(s, ResidualSpec) and s.shortcut]
    assert [type(s).__name__ for s in residuals[0].body[:2]] == ["PoolSpec", "ConvSpec"]
    assert residuals[0].body[0] == PoolSpec(2, "avg", (3, 3), (2, 2), (1, 1), (1, 1))
    exact(space, candidate, (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    module = result.module.eval()
    loaded = load_student(save_student(result, tmp_path / "student"))
    with torch.no_grad():
        assert module(x).shape == (2, 10)
        assert torch.equal(loaded(x), module(x))


def test_a_projection_body_left_with_its_pooling_alone_is_its_shortcut(resnet20) -> None:
    space = resnet20
    body_conv = next(u for u in strided_units(space) if space.units[u].branch == "body")
    block = space.units[space.units[body_conv].parent]  # type: ignore[index]
    candidate = without(space, list(block.body))
    plain = without(space, [u for u in block.body if u != body_conv])  # the strided conv stays
    assert sum(isinstance(s, ResidualSpec) for s in space.arch(candidate).layers) == 8
    assert not any(isinstance(s, PoolSpec) for s in space.arch(candidate).layers)
    assert space.cost(candidate).params < space.cost(plain).params
    exact(space, candidate, (3, 32, 32))
