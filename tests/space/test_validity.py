"""Invalid candidates are reported with a reason, cheaply and without building anything."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archcompress.space import Candidate, CompressionSpace, InvalidCandidateError, RemovalRules
from archcompress.space import build as build_module


def _shrinking_net() -> nn.Module:
    """1x4x4 -> 4x4 -> padded 1x1 conv to 8x8 -> 5x5 valid conv to 4x4: without the padding conv, 0x0."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 4, 1, padding=2),
        nn.Conv2d(4, 4, 5),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def test_spatial_size_below_one() -> None:
    space = CompressionSpace.from_model(_shrinking_net(), (1, 4, 4))
    assert len(space.removable_units) == 2  # the padding conv and the 5x5 conv
    reason = space.check(Candidate(keep=(False, True), ratios=space.teacher_candidate().ratios))
    assert reason is not None and "size below 1" in reason and "unit 2" in reason


def test_more_params_than_the_teacher(teacher_space) -> None:
    _, space = teacher_space("lenet5", (1, 28, 28))
    pools = [u.keep_index for u in space.units if u.kind == "pool"]
    keep = [True] * len(space.removable_units)
    for position in pools:
        keep[position] = False  # the classifier then reads 16 x 28 x 28 features
    reason = space.check(Candidate(keep, space.teacher_candidate().ratios))
    assert reason is not None and "more parameters" in reason


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_width_ratio_out_of_range(teacher_space, ratio: float) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    ratios = list(space.teacher_candidate().ratios)
    ratios[2] = ratio
    reason = space.check(Candidate(space.teacher_candidate().keep, ratios))
    assert reason is not None and "outside (0, 1]" in reason


def test_all_weighted_layers_removed() -> None:
    anything = RemovalRules(first_layer=True, classifier=True, linear=True, strided_conv=True, avg_pool=True)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 12))
    space = CompressionSpace.from_model(model, (3, 2, 2), rules=anything)
    reason = space.check(Candidate(keep=(False, False), ratios=space.teacher_candidate().ratios))
    assert reason == "all layers with weights are removed"


def test_invalid_candidates_raise_on_build_and_cost(teacher_space) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    bad = Candidate(space.teacher_candidate().keep, (0.0,) * len(space.shrink_groups))
    with pytest.raises(InvalidCandidateError, match="invalid candidate: width ratio"):
        space.build(bad)
    with pytest.raises(InvalidCandidateError):
        space.cost(bad)


def test_check_never_builds_modules(teacher_space, monkeypatch: pytest.MonkeyPatch) -> None:
    _, space = teacher_space("torchvision:resnet50", (3, 32, 32))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("check() must not build modules")

    monkeypatch.setattr(build_module.Student, "__init__", refuse)
    for seed in range(20):
        candidate = space.sample(seed)
        assert space.check(candidate) is None
        assert space.cost(candidate).params > 0


def test_sample_returns_valid_candidates_reproducibly(teacher_space) -> None:
    _, space = teacher_space("lenet5", (1, 28, 28))  # about half of lenet's random candidates are invalid
    draws = [space.sample(seed) for seed in range(20)]
    assert all(space.check(c) is None for c in draws)
    assert draws == [space.sample(seed) for seed in range(20)]
    assert len({space.candidate_hash(c) for c in draws}) > 5


class _PaddedBody(nn.Module):
    """A block body that shrinks 6x6 to 4x4 with a valid 3x3 conv and pads back to 6x6."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shrink = nn.Conv2d(8, 8, 3)
        self.grow = nn.Conv2d(8, 8, 3, padding=2)
        self.fc = nn.Linear(8 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.fc(torch.flatten(x + self.grow(self.shrink(x)), 1))


def test_residual_shapes_must_agree() -> None:
    space = CompressionSpace.from_model(_PaddedBody(), (3, 6, 6), kernel_ratios=(0.2, 1.0))
    assert len(space.kernel_units) == 3
    teacher = space.teacher_candidate()
    # a 1x1 "grow" keeps padding 1 and still gives 6x6; a 1x1 "shrink" (no padding left) gives 8x8
    assert space.check(Candidate(teacher.keep, teacher.ratios, (1.0, 1.0, 0.2))) is None
    reason = space.check(Candidate(teacher.keep, teacher.ratios, (1.0, 0.2, 1.0)))
    assert reason is not None and "the body gives shape (8, 8, 8) but the shortcut (8, 6, 6)" in reason
