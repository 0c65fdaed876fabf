"""ConvNeXt-style blocks: ``permute`` to channels-last, LayerNorm and Linear on channels, layer scale.

The tracer reads a channels-last stretch as its channels-first equivalent (LayerNorm over channels, 1x1
convs, a per-channel scale), so students hold no permutes. Full-width equality with the teacher and exact
costs of random candidates are checked for every supported teacher in ``test_build.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space import Candidate, CompressionSpace, count_params, measure_macs
from archcompress.space.ir import ChannelNormSpec, ConvSpec, ResidualSpec, ScaleSpec


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.argsort(scores, descending=True, stable=True)[:k].sort().values


def _l1(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten(1).sum(1)


def test_convnext_blocks_read_as_channels_first_units(teacher_space) -> None:
    _, space = teacher_space("convnext", (3, 16, 16))
    names = {u.name: u for u in space.units}
    blocks = [u for u in space.units if u.kind == "block"]
    assert len(blocks) == 2 and all(b.join == "add" and not b.shortcut and b.removable for b in blocks)
    body = [space.units[i] for i in blocks[0].body]
    assert [u.name for u in body] == ["blocks.0.dwconv", "blocks.0.pwconv1", "blocks.0.pwconv2", "blocks.0:mul"]
    specs = [[type(space.layers[i].spec) for i in u.layers] for u in body]
    assert specs[0][1] is ChannelNormSpec and specs[3] == [ScaleSpec]  # dwconv + LayerNorm; the layer scale
    pw1 = space.layers[body[1].layers[0]].spec
    assert isinstance(pw1, ConvSpec) and pw1.kernel == (1, 1) and (pw1.in_channels, pw1.out_channels) == (16, 64)
    assert body[1].in_shape == (16, 8, 8) and body[1].out_shape == (64, 8, 8)  # channels first
    # the stream (stem, both blocks' pwconv2) is one group; each block's hidden width is another
    assert names["stem"].shrink_group == body[2].shrink_group != body[1].shrink_group
    assert names["head_norm"].kind == "norm" and names["head_norm"].in_shape == (16,)
    ops = {type(s).__name__ for s in space.arch(space.teacher_candidate()).layers}
    assert ops <= {"ConvSpec", "ChannelNormSpec", "ResidualSpec", "MeanSpec", "LinearSpec"}


def test_half_width_inherits_layernorm_linear_and_scale_slices(teacher_space) -> None:
    teacher, space = teacher_space("convnext", (3, 16, 16), min_channels=1)
    candidate = space.uniform_candidate(0.5)
    result = space.build(candidate)
    assert result.fresh == 0
    modules = dict(result.module.named_modules())
    student = {space.layers[p.layer].source: modules[p.path] for p in space.plan(candidate).layers}
    block = teacher.blocks[0]
    stream_l1 = _l1(teacher.stem.weight) + sum(_l1(b.pwconv2.weight) for b in teacher.blocks)
    stream, hidden = _top(stream_l1, 8), _top(_l1(block.pwconv1.weight), 32)
    exact = {"rtol": 0, "atol": 0}
    torch.testing.assert_close(student["blocks.0.norm"].weight, block.norm.weight[stream], **exact)
    torch.testing.assert_close(
        student["blocks.0.pwconv1"].weight, block.pwconv1.weight[hidden][:, stream][:, :, None, None], **exact
    )
    torch.testing.assert_close(student["blocks.0.pwconv1"].bias, block.pwconv1.bias[hidden], **exact)
    torch.testing.assert_close(student["blocks.0.gamma"].weight, block.gamma[stream], **exact)
    torch.testing.assert_close(student["stem_norm"].bias, teacher.stem_norm.bias[stream], **exact)
    assert result.params == count_params(result.module) and result.macs == measure_macs(result.module, (3, 16, 16))


def test_a_convnext_block_is_removable_as_a_unit(teacher_space) -> None:
    teacher, space = teacher_space("convnext", (3, 16, 16))
    block = next(u for u in space.units if u.kind == "block")
    keep = [True] * len(space.removable_units)
    keep[block.keep_index] = False
    result = space.build(Candidate(tuple(keep), (1.0,) * len(space.shrink_groups)))
    assert result.params == space.teacher_cost.params - sum(p.numel() for p in teacher.blocks[0].parameters())
    assert sum(isinstance(s, ResidualSpec) for s in result.arch.layers) == 1
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gamma = teacher.blocks[0].gamma.detach().clone()
    with torch.no_grad():
        teacher.blocks[0].gamma.zero_()  # x + 0 * f(x) == x: the teacher without that block
        try:
            expected = teacher(x)
        finally:
            teacher.blocks[0].gamma.copy_(gamma)
        torch.testing.assert_close(result.module.eval()(x), expected, rtol=0, atol=1e-5)


def test_a_conv_on_channels_last_features_is_refused() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4 * 4 * 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x.permute(0, 2, 3, 1)).flatten(1))  # convolves over (H, W, C) as if C, H, W

    with pytest.raises(ArchcompressError, match=r"Conv2d on channels-last features \(after a permute\)"):
        CompressionSpace.from_model(Mixed(), (4, 4, 4))


def test_a_layernorm_over_the_width_of_channels_first_features_is_refused() -> None:
    class WidthNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.norm = nn.LayerNorm(4)  # normalises the last dimension: the width, which is also 4
            self.fc = nn.Linear(4 * 4 * 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.norm(self.conv(x)).flatten(1))

    with pytest.raises(ArchcompressError, match="LayerNorm over the last dimension of channels-first features"):
        CompressionSpace.from_model(WidthNorm(), (3, 4, 4))


def test_a_concatenation_of_channels_last_features_is_refused() -> None:
    class LastCat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.fc = nn.Linear(4 * 8 * 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 2, 3, 1)  # (B, H, W, C): dim 1 is the height
            return self.fc(torch.cat([self.a(x), self.b(x)], 1).flatten(1))

    with pytest.raises(ArchcompressError, match="a concatenation of channels-last features"):
        CompressionSpace.from_model(LastCat(), (4, 4, 4))
