"""Building students: random candidates for every supported teacher, exact cost, weight inheritance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from archcompress.space import Candidate, CompressionSpace, Residual, Student, count_params, measure_macs
from archcompress.space.ir import ConvSpec, ResidualSpec


@st.composite
def valid_candidates(draw: st.DrawFn, space: CompressionSpace) -> Candidate:
    """Keep flags and ratios drawn independently; invalid draws are rejected."""
    n_keep, n_ratio = len(space.removable_units), len(space.shrink_groups)
    candidate = Candidate(
        keep=draw(st.lists(st.booleans(), min_size=n_keep, max_size=n_keep)),
        ratios=draw(st.lists(st.sampled_from(space.ratios), min_size=n_ratio, max_size=n_ratio)),
    )
    if space.check(candidate) is not None:
        candidate = space.sample(draw(st.integers(0, 2**32 - 1)))  # resampling keeps rejections rare
    return candidate


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return module(x)


def test_teacher_candidate_reproduces_the_teacher(teacher_space, model_case) -> None:
    ref, shape, _ = model_case
    teacher, space = teacher_space(ref, shape)
    result = space.build(space.teacher_candidate())
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_forward(result.module, x), _forward(teacher, x), rtol=0, atol=1e-5)
    assert result.fresh == 0 and result.inherited > 0
    assert result.params == count_params(teacher) == space.teacher_cost.params
    assert result.macs == measure_macs(teacher, shape) == space.teacher_cost.macs


def test_random_candidates_build_run_and_cost_exactly(teacher_space, model_case) -> None:
    ref, shape, examples = model_case
    _, space = teacher_space(ref, shape)
    classes = space.units[-1].out_shape

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(candidate=valid_candidates(space))
    def check(candidate: Candidate) -> None:
        result = space.build(candidate)
        out = _forward(result.module, torch.randn(2, *shape))
        assert out.shape == (2, *classes) and torch.isfinite(out).all()
        assert result.params == count_params(result.module) == space.cost(candidate).params
        assert result.macs == measure_macs(result.module, shape) == space.cost(candidate).macs
        assert result.params <= space.teacher_cost.params

    check()


def test_scratch_build_initialises_every_layer_freshly(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    candidate = space.sample(0)
    inherited, scratch = space.build(candidate), space.build(candidate, inherit=False)
    assert scratch.inherited == 0 and scratch.fresh == inherited.inherited + inherited.fresh
    assert scratch.arch == inherited.arch and scratch.params == inherited.params


def test_student_is_independent_of_the_teacher(teacher_space) -> None:
    teacher, space = teacher_space("resnet20", (3, 32, 32))
    student = space.build(space.teacher_candidate()).module
    classes = {type(m) for m in student.modules()}
    layer_types = {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear}
    assert classes <= {Student, Residual, nn.Sequential, *layer_types}
    before = _forward(student, torch.ones(1, 3, 32, 32))
    with torch.no_grad():
        teacher.conv1.weight.add_(1.0)  # weights were copied, not shared
    try:
        torch.testing.assert_close(_forward(student, torch.ones(1, 3, 32, 32)), before)
    finally:
        with torch.no_grad():
            teacher.conv1.weight.sub_(1.0)


def _tiny() -> nn.Sequential:
    """conv(1->4) + ReLU, conv(4->3) + ReLU, flatten (3 x 2 x 2), linear(12 -> 2), with hand-set filters."""
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    )
    with torch.no_grad():
        # conv 1 filter L1 norms 0.9 / 8.1 / 4.5 / 2.7: the top two are filters 1 and 2
        for i, value in enumerate([0.1, -0.9, 0.5, 0.3]):
            net[0].weight[i].fill_(value)
        net[0].bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        # conv 2: filter 2 has by far the largest L1 norm
        net[2].weight.copy_(torch.arange(12.0).reshape(3, 4, 1, 1) * torch.tensor([1.0, -0.1, 3.0]).reshape(3, 1, 1, 1))
        net[5].weight.copy_(torch.arange(24.0).reshape(2, 12))
    return net.eval()


def test_inherited_weights_are_the_top_l1_channels() -> None:
    teacher = _tiny()
    space = CompressionSpace.from_model(teacher, (1, 2, 2), min_channels=1)
    assert len(space.shrink_groups) == 2 and len(space.removable_units) == 1
    result = space.build(Candidate(keep=(True,), ratios=(0.5, 0.34)))  # keep 2 of 4, then 1 of 3
    conv1, conv2, linear = result.module.layers[0], result.module.layers[2], result.module.layers[5]
    assert result.fresh == 0 and result.inherited == 3
    torch.testing.assert_close(conv1.weight, teacher[0].weight[[1, 2]])
    torch.testing.assert_close(conv1.bias, torch.tensor([2.0, 3.0]))
    # conv 2 keeps its filter 2, reading conv 1's kept channels 1 and 2
    torch.testing.assert_close(conv2.weight, teacher[2].weight[[2]][:, [1, 2]])
    # the classifier reads channel 2's flattened positions 8..11 of the teacher's 12 inputs
    torch.testing.assert_close(linear.weight, teacher[5].weight[:, 8:12])
    torch.testing.assert_close(linear.bias, teacher[5].bias)


def test_batch_norm_statistics_follow_the_kept_channels(teacher_space) -> None:
    teacher, space = teacher_space("vgg11", (1, 28, 28))
    ratios = list(space.teacher_candidate().ratios)
    ratios[space.units[0].shrink_group] = 0.25  # 64 -> 16 channels
    student = space.build(Candidate(space.teacher_candidate().keep, ratios)).module
    conv, bn = student.layers[0], student.layers[1]
    kept = teacher.features[0].weight.abs().sum((1, 2, 3)).argsort(descending=True)[:16].sort().values
    torch.testing.assert_close(conv.weight, teacher.features[0].weight[kept])
    for name in ("weight", "bias", "running_mean", "running_var"):
        torch.testing.assert_close(getattr(bn, name), getattr(teacher.features[1], name)[kept])
    # the next conv reads exactly those channels
    torch.testing.assert_close(student.layers[4].weight, teacher.features[4].weight[:, kept])


def test_removing_a_layer_freshly_initialises_the_next_one(teacher_space) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    conv = next(u for u in space.units if u.kind == "conv" and u.removable and space.units[u.index + 1].kind == "conv")
    keep = list(space.teacher_candidate().keep)
    keep[conv.keep_index] = False
    result = space.build(Candidate(keep, space.teacher_candidate().ratios))
    # the next conv and its BN read channels of another teacher layer than they were trained on
    position = sum(len(space.units[u].layers) for u in range(conv.index))
    assert result.fresh_layers == (f"layers.{position}", f"layers.{position + 1}")
    assert result.inherited == 17 - 2 - 2  # teacher: 8 conv + 8 BN + 1 linear; removed: conv + BN


def test_shrunk_kernels_keep_the_teacher_centre() -> None:
    teacher = nn.Sequential(
        nn.Conv2d(2, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2), nn.Flatten(), nn.Linear(64, 3)
    )
    space = CompressionSpace.from_model(teacher.eval(), (2, 4, 4), kernel_ratios=(0.34, 0.6, 1.0))
    assert len(space.kernel_units) == 2
    result = space.build(Candidate(keep=(True,), ratios=(1.0, 1.0), kernel_ratios=(0.6, 0.34)))
    first, second = result.module.layers[0], result.module.layers[2]
    assert first.kernel_size == (3, 3) and first.padding == (1, 1)
    assert second.kernel_size == (1, 1) and second.padding == (0, 0)
    torch.testing.assert_close(first.weight, teacher[0].weight[:, :, 1:4, 1:4])
    torch.testing.assert_close(second.weight, teacher[2].weight[:, :, 2:3, 2:3])
    assert result.fresh == 0 and _forward(result.module, torch.randn(1, 2, 4, 4)).shape == (1, 3)


def test_removing_the_last_body_conv_ties_the_previous_conv_to_the_residual_width(teacher_space) -> None:
    _, space = teacher_space("torchvision:resnet50", (3, 32, 32))
    block = next(u for u in space.units if u.name == "layer1.1")
    conv3 = space.units[block.body[2]]
    keep = list(space.teacher_candidate().keep)
    keep[conv3.keep_index] = False
    ratios = [0.5] * len(space.shrink_groups)
    result = space.build(Candidate(keep, ratios))
    residual = result.arch.layers[6]  # conv, BN, ReLU, maxpool, block layer1.0, ReLU, block layer1.1
    assert isinstance(residual, ResidualSpec)
    conv2_spec = residual.body[3]
    assert isinstance(conv2_spec, ConvSpec) and conv2_spec.out_channels == 128  # 256 x 0.5, not 64 x 0.5
    assert any(path.startswith("layers.6.body.3") for path in result.fresh_layers)
    assert _forward(result.module, torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_emptied_projection_body_leaves_the_shortcut_in_line(teacher_space) -> None:
    _, space = teacher_space("flatten", (1, 16, 16))
    block = next(u for u in space.units if u.kind == "block")
    keep = list(space.teacher_candidate().keep)
    for unit in block.body:
        keep[space.units[unit].keep_index] = False
    result = space.build(Candidate(keep, space.teacher_candidate().ratios))
    assert not any(isinstance(s, ResidualSpec) for s in result.arch.layers)
    assert [type(m).__name__ for m in result.module.layers][:3] == ["Conv2d", "ReLU", "Conv2d"]
    assert result.fresh == 0  # the projection reads the stem's channels, as in the teacher


@pytest.mark.parametrize(
    ("ref", "shape"),
    [("resnet20", (3, 32, 32)), ("lenet5", (1, 28, 28)), ("cnn1d", (1, 40)), ("sequential", (3, 16, 16))],
)
def test_random_candidates_with_kernel_ratios(teacher_space, ref, shape) -> None:
    _, space = teacher_space(ref, shape, kernel_ratios=(0.2, 0.34, 0.6, 1.0))
    assert space.kernel_units
    for seed in range(5):
        candidate = space.sample(seed)
        result = space.build(candidate)
        assert _forward(result.module, torch.randn(2, *shape)).shape == (2, 10)
        assert result.params == count_params(result.module) == space.cost(candidate).params
        assert result.macs == measure_macs(result.module, shape)
