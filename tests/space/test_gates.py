"""Gates (squeeze-and-excitation ``x * gate``), nested residuals, ``x.mean`` and stochastic depth.

Every supported teacher (including these) is also covered by the registry-wide tests of ``test_build.py``
(full-width student == teacher, random candidates cost exactly what the built module counts).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archcompress.space import Candidate, CompressionSpace, load_student, save_student
from archcompress.space.cost import count_params, measure_macs
from archcompress.space.ir import ResidualSpec, StudentArch


def _by_name(space: CompressionSpace) -> dict[str, int]:
    return {u.name: u.index for u in space.units}


def _gate_block(space: CompressionSpace) -> int:
    return next(u.index for u in space.units if u.kind == "block" and u.join == "mul")


def test_se_inside_a_residual_body_is_a_nested_gate_block(teacher_space) -> None:
    _, space = teacher_space("se_residual", (3, 16, 16))
    units, names = space.units, _by_name(space)
    blocks = [u for u in units if u.kind == "block"]
    # the inverted residual, its gate, the outer residual and the residual nested in its body
    assert [(u.join, u.branch) for u in blocks] == [("add", "main"), ("mul", "body"), ("add", "main"), ("add", "body")]
    gate = units[_gate_block(space)]
    assert gate.parent == blocks[0].index and gate.shortcut == ()  # gates the unchanged depthwise output
    assert [units[i].name for i in gate.body] == ["adaptive_avg_pool2d", "se_reduce", "se_expand"]
    assert all(units[i].branch == "gate" and not units[i].removable for i in gate.body)
    assert gate.removable  # removed as a whole: y * gate -> y
    # the gate's output channels are the channels it scales; its hidden width is a group of its own
    expand, reduce_, scale = (units[names[n]] for n in ("expand", "se_reduce", "se_expand"))
    assert scale.shrink_group == expand.shrink_group == units[names["dw"]].shrink_group is not None
    assert reduce_.shrink_group not in (None, expand.shrink_group)
    # stochastic depth is an identity at inference: no unit, the block body ends with the projection
    assert "drop_path" not in names and units[blocks[0].body[-1]].name == "project"
    assert units[names["inner_b"]].parent == blocks[3].index and blocks[3].parent == blocks[2].index


def test_half_width_gate_inherits_the_top_l1_slices(teacher_space) -> None:
    teacher, space = teacher_space("se_residual", (3, 16, 16))
    result = space.build(space.uniform_candidate(0.5))
    assert result.fresh == 0
    modules = dict(result.module.named_modules())
    student = {
        name: modules[p.path]
        for p in space.plan(space.uniform_candidate(0.5)).layers
        if (name := space.layers[p.layer].source)
    }

    def top(scores: torch.Tensor, k: int) -> torch.Tensor:
        return torch.argsort(scores, descending=True, stable=True)[:k].sort().values

    l1 = {n: getattr(teacher, n).weight.detach().abs().flatten(1).sum(1) for n in ("stem", "expand", "se_reduce")}
    # the expanded group is produced by `expand` and by the gate's `se_expand`: their L1 norms add up
    expanded = top(l1["expand"] + teacher.se_expand.weight.detach().abs().flatten(1).sum(1), 24)
    hidden = top(l1["se_reduce"], 10)  # 12 * 0.5 = 6, raised to min_channels = 10
    stem = top(
        l1["stem"]
        + sum(getattr(teacher, n).weight.detach().abs().flatten(1).sum(1) for n in ("project", "inner_a", "inner_b")),
        10,
    )  # 16 * 0.5 -> 10
    weight = {n: getattr(teacher, n).weight.detach() for n in ("expand", "dw", "se_reduce", "se_expand")}
    torch.testing.assert_close(student["expand"].weight, weight["expand"][expanded][:, stem], rtol=0, atol=0)
    torch.testing.assert_close(student["dw"].weight, weight["dw"][expanded], rtol=0, atol=0)
    torch.testing.assert_close(student["se_reduce"].weight, weight["se_reduce"][hidden][:, expanded], rtol=0, atol=0)
    torch.testing.assert_close(student["se_expand"].weight, weight["se_expand"][expanded][:, hidden], rtol=0, atol=0)
    torch.testing.assert_close(student["se_expand"].bias, teacher.se_expand.bias.detach()[expanded], rtol=0, atol=0)


def test_removing_the_gate_leaves_the_scaled_tensor(teacher_space) -> None:
    teacher, space = teacher_space("se_residual", (3, 16, 16))
    gate = space.units[_gate_block(space)]
    keep = [True] * len(space.removable_units)
    keep[gate.keep_index] = False
    candidate = Candidate(tuple(keep), (1.0,) * len(space.shrink_groups))
    result = space.build(candidate)
    se_params = sum(p.numel() for n in ("se_reduce", "se_expand") for p in getattr(teacher, n).parameters())
    assert result.params == space.teacher_cost.params - se_params == count_params(result.module)
    assert result.macs == measure_macs(result.module, (3, 16, 16))

    def joins(specs: tuple) -> list[str]:
        return [j for s in specs if isinstance(s, ResidualSpec) for j in (s.join, *joins(s.body + s.shortcut))]

    assert "mul" not in joins(result.arch.layers) and joins(space.arch(space.teacher_candidate()).layers).count("mul")
    # the teacher without its gate: same as the student built without it
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        original = teacher.se_expand.weight.clone(), teacher.se_expand.bias.clone()
        teacher.se_expand.weight.zero_()
        teacher.se_expand.bias.fill_(3.0)  # hardsigmoid(3) == 1: the gate passes y through
        try:
            expected = teacher(x)
        finally:
            teacher.se_expand.weight.copy_(original[0])
            teacher.se_expand.bias.copy_(original[1])
        torch.testing.assert_close(result.module.eval()(x), expected, rtol=0, atol=1e-5)


def test_gate_students_save_and_reload(teacher_space, tmp_path) -> None:
    _, space = teacher_space("se_residual", (3, 16, 16))
    result = space.build(space.sample(3))
    save_student(result, tmp_path / "student")
    document = json.loads((tmp_path / "student" / "arch.json").read_text())
    assert StudentArch.from_dict(document["arch"]) == result.arch
    loaded = load_student(tmp_path / "student")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.module.eval()(x), rtol=0, atol=0)


def test_an_unknown_join_in_a_saved_architecture_is_refused() -> None:
    from archcompress.errors import ArchcompressError

    data = {"version": 1, "input_shape": [3, 4, 4], "layers": [{"op": "residual", "body": [], "join": "div"}]}
    with pytest.raises(ArchcompressError, match="malformed student architecture"):
        StudentArch.from_dict(data)


@pytest.mark.parametrize(
    ("ref", "gates", "nested"),
    [
        # MobileNetV3-small (torchvision's config): squeeze-excitation in 9 of its 11 inverted residuals,
        # 5 of those 9 with an identity shortcut (the gate then sits inside a residual body)
        ("torchvision:mobilenet_v3_small", 9, 5),
        # EfficientNet-B0: every one of its 16 MBConv blocks has SE; 9 have an identity shortcut
        ("torchvision:efficientnet_b0", 16, 9),
    ],
)
def test_torchvision_se_networks(teacher_space, ref, gates, nested) -> None:
    _, space = teacher_space(ref, (3, 32, 32))
    gate_blocks = [u for u in space.units if u.kind == "block" and u.join == "mul"]
    assert len(gate_blocks) == gates
    assert sum(1 for u in gate_blocks if u.parent is not None) == nested
    assert all(space.units[u.body[-1]].kind == "conv" for u in gate_blocks)


def test_mean_over_spatial_dims_is_global_pooling(teacher_space) -> None:
    _, space = teacher_space("torchvision:mnasnet0_5", (3, 32, 32))
    pool = space.units[-3]  # mean, dropout, classifier
    assert pool.kind == "adaptive_pool" and not pool.removable
    assert pool.in_shape == (1280, 1, 1) and pool.out_shape == (1280,)


def test_a_mean_over_channels_is_refused() -> None:
    from archcompress.errors import ArchcompressError

    class ChannelMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).mean(1).flatten(1))

    with pytest.raises(ArchcompressError, match=r"the method \.mean\(\) mapping \(4, 4, 4\) to \(4, 4\)"):
        CompressionSpace.from_model(ChannelMean(), (3, 4, 4))
