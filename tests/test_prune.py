"""Prune baseline: L1 channel pruning with Torch-Pruning to a parameter count, and saving the pruned student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.methods.pruning import (
    classifier_layer,
    kept_channels,
    load_pruned,
    prune_channels,
    prune_to_params,
    save_pruned,
)
from archcompress.models import create_model
from archcompress.space import Student, count_params

CASES = [  # (reference, per-sample input shape, constructor kwargs, compression factor)
    ("vgg11", (1, 32, 32), {"width": 0.25}, 10),
    ("vgg11", (1, 28, 28), {"width": 0.5}, 100),
    ("resnet20", (3, 32, 32), {}, 10),
    ("cnn1d", (1, 40), {}, 300),
    ("mlp", (1, 8, 8), {}, 20),
    ("lenet5", (1, 28, 28), {}, 10),
    ("torchvision:resnet18", (3, 32, 32), {}, 50),
]


@pytest.fixture(scope="module")
def small_vgg() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("vgg11", (1, 16, 16), 10, {"width": 0.25}), torch.zeros(1, 1, 16, 16)


@pytest.mark.parametrize(("ref", "shape", "kwargs", "factor"), CASES, ids=[f"{c[0]}-{c[3]}x" for c in CASES])
def test_prunes_to_the_target_parameter_count(
    ref: str, shape: tuple[int, ...], kwargs: dict[str, float], factor: int
) -> None:
    torch.manual_seed(0)
    model = create_model(ref, shape, 10, kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.zeros(1, *shape)
    target = count_params(model) // factor
    result = prune_to_params(model, example, target)
    assert abs(result.params - target) <= 0.02 * target
    assert result.params == count_params(result.module)
    assert 0 < result.ratio < 1 and result.input_shape == shape
    batch = torch.randn(3, *shape)
    with torch.no_grad():
        assert result.module.eval()(batch).shape == (3, 10)  # logits are never pruned
    # the teacher itself is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_keeps_the_filters_with_the_largest_l1_norm() -> None:
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3))  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.Conv2d):
                signs = torch.randn_like(module.weight).sign()
                scales = torch.randperm(module.out_channels).float() + 1.0  # distinct L1 norm per filter
                module.weight.copy_(signs * scales.view(-1, 1, 1, 1))
    conv1, conv2, fc = model[0], model[2], model[4]
    pruned = prune_channels(model, torch.zeros(1, 1, 5, 5), 0.5)
    new1, new2, new_fc = pruned[0], pruned[2], pruned[4]
    l1_first = conv1.weight.abs().sum((1, 2, 3))
    survivors = sorted(l1_first.argsort(descending=True)[:3].tolist())  # 6 -> 3, in their original order
    assert new1.out_channels == 3 and new2.in_channels == 3
    assert torch.equal(new1.weight, conv1.weight[survivors]) and torch.equal(new1.bias, conv1.bias[survivors])
    kept2 = sorted(conv2.weight.abs().sum((1, 2, 3)).argsort(descending=True)[:2].tolist())  # 4 -> 2
    assert torch.equal(new2.weight, conv2.weight[kept2][:, survivors])
    # the classifier keeps its 3 outputs; its inputs follow the surviving channels of the flattened map
    columns = [c * 25 + i for c in kept2 for i in range(25)]
    assert new_fc.out_features == 3 and torch.equal(new_fc.weight, fc.weight[:, columns])
    assert classifier_layer(model, torch.zeros(1, 1, 5, 5)) is fc


def test_kept_channels_rounds_and_keeps_at_least_one() -> None:
    assert [kept_channels(64, r) for r in (0.0, 0.5, 0.9, 0.99)] == [64, 32, 6, 1]
    assert kept_channels(3, 0.5) == 2 and kept_channels(6, 0.95) == 1


def test_a_target_between_channel_steps_gives_the_closest_count_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", (1, 28, 28), 10)  # 20x: one more conv-2 channel adds ~550 params
    target = count_params(model) // 20
    with caplog.at_level("WARNING", logger="archcompress"):
        result = prune_to_params(model, torch.zeros(1, 1, 28, 28), target)
    assert abs(result.params - target) > 0.02 * target and abs(result.params - target) < 0.15 * target
    assert "not within 2%" in caplog.text
    tighter = prune_channels(model, torch.zeros(1, 1, 28, 28), result.ratio)  # the ratio reproduces the network
    assert count_params(tighter) == result.params


def test_save_and_load_give_identical_outputs(small_vgg: tuple[nn.Module, torch.Tensor], tmp_path: Path) -> None:
    model, example = small_vgg
    result = prune_to_params(model, example, count_params(model) // 20)
    directory = save_pruned(result.module, tmp_path / "student", {"target": 20}, input_shape=result.input_shape)
    document = json.loads((directory / "arch.json").read_text())
    assert document["metadata"] == {"method": "prune", "target": 20}
    assert document["params"] == result.params
    loaded = load_pruned(directory)  # weights_only=True load, no teacher class needed
    assert isinstance(loaded, Student) and count_params(loaded) == result.params
    batch = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), result.module.eval()(batch), rtol=1e-5, atol=1e-6)
    save_pruned(loaded, tmp_path / "again")  # a Student needs no input shape
    assert load_pruned(tmp_path / "again").arch == loaded.arch


def test_save_needs_the_input_shape_of_a_pruned_teacher(
    small_vgg: tuple[nn.Module, torch.Tensor], tmp_path: Path
) -> None:
    model, _ = small_vgg
    with pytest.raises(ArchcompressError, match="input_shape"):
        save_pruned(model, tmp_path / "student")


def test_an_unreachable_target_is_refused(small_vgg: tuple[nn.Module, torch.Tensor]) -> None:
    model, example = small_vgg
    with pytest.raises(ArchcompressError, match=r"cannot prune to 10 parameters .*ask for at least") as info:
        prune_to_params(model, example, 10)
    assert "\n" not in str(info.value)
    with pytest.raises(ArchcompressError, match="the model has only"):
        prune_to_params(model, example, 2 * count_params(model))


def test_a_training_frozen_teacher_keeps_its_state(small_vgg: tuple[nn.Module, torch.Tensor]) -> None:
    model, example = small_vgg
    teacher = create_model("vgg11", (1, 16, 16), 10, {"width": 0.25}).train()
    teacher.load_state_dict(model.state_dict())
    teacher.requires_grad_(False)
    stats = {k: v.clone() for k, v in teacher.state_dict().items() if "running" in k}
    result = prune_to_params(teacher, example, count_params(teacher) // 5)
    assert all(torch.equal(stats[k], teacher.state_dict()[k]) for k in stats)  # tracing ran in eval mode
    assert teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert result.module.training and not any(p.requires_grad for p in result.module.parameters())
