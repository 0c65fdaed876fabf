"""The teacher zoo, parametrised over the registry: every registered model is checked automatically."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.models import ZooEntry, check_model_io, create_model, zoo_entries, zoo_entry
from archcompress.runtime import seed_everything

IMAGE_SHAPES: list[tuple[int, ...]] = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
SIGNAL_SHAPES: list[tuple[int, ...]] = [(1, 40)]
NUM_CLASSES = 7
ENTRIES = zoo_entries()


def supported_shapes(entry: ZooEntry) -> list[tuple[int, ...]]:
    """Representative input shapes for a model's declared input rank (any rank: images and signals)."""
    if entry.input_rank == 3:
        return IMAGE_SHAPES
    if entry.input_rank == 2:
        return SIGNAL_SHAPES
    return IMAGE_SHAPES + SIGNAL_SHAPES


def smallest_shape(entry: ZooEntry) -> tuple[int, ...]:
    return min(supported_shapes(entry), key=lambda shape: torch.Size(shape).numel())


def shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


FORWARD_CASES = [
    pytest.param(entry.name, shape, id=f"{entry.name}-{shape_id(shape)}")
    for entry in ENTRIES
    for shape in supported_shapes(entry)
]
ENTRY_NAMES = [entry.name for entry in ENTRIES]
RANKED_NAMES = [entry.name for entry in ENTRIES if entry.input_rank is not None]


def test_registry_lists_the_documented_zoo_with_descriptions() -> None:
    names = [entry.name for entry in ENTRIES]
    assert names == sorted(names)
    expected = {"lenet5", "mlp", "cnn1d", "resnet18", "resnet20", "resnet34", "resnet56"}
    expected |= {"vgg11", "vgg13", "vgg16", "vgg19"}
    assert expected <= set(names)
    for entry in ENTRIES:
        assert entry.description.strip(), entry.name
        assert "\n" not in entry.description, entry.name
        assert zoo_entry(entry.name) is entry


@pytest.mark.parametrize(("name", "shape"), FORWARD_CASES)
def test_forward_gives_one_logit_per_class(name: str, shape: tuple[int, ...]) -> None:
    seed_everything(0)
    model = create_model(name, shape, NUM_CLASSES)
    assert isinstance(model, nn.Module)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    check_model_io(model, name, shape, NUM_CLASSES)  # must not raise
    assert not model.training  # check_model_io restores the mode it found


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_width_multiplier_scales_the_parameter_count(name: str) -> None:
    entry = zoo_entry(name)
    assert "width" in inspect.signature(entry.factory).parameters, "every zoo model must take width"
    shape = smallest_shape(entry)
    counts = {w: param_count(create_model(name, shape, NUM_CLASSES, {"width": w})) for w in (0.5, 1.0, 2.0)}
    assert counts[0.5] < counts[1.0] < counts[2.0]
    # Width scales layer widths, so weights grow roughly quadratically: halving keeps well under 60%.
    assert counts[0.5] < 0.6 * counts[1.0]
    narrow = create_model(name, shape, NUM_CLASSES, {"width": 0.5}).eval()
    with torch.no_grad():
        assert narrow(torch.randn(2, *shape)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_same_seed_gives_identical_weights_and_another_seed_differs(name: str) -> None:
    shape = smallest_shape(zoo_entry(name))
    kwargs = {"width": 0.5}

    def build(seed: int) -> dict[str, torch.Tensor]:
        seed_everything(seed)
        return create_model(name, shape, NUM_CLASSES, kwargs).state_dict()

    first, again, other = build(3), build(3), build(4)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("name", RANKED_NAMES)
def test_wrong_input_rank_is_refused_naming_the_model(name: str) -> None:
    entry = zoo_entry(name)
    wrong = SIGNAL_SHAPES[0] if entry.input_rank == 3 else IMAGE_SHAPES[0]
    with pytest.raises(ArchcompressError) as info:
        create_model(name, wrong, NUM_CLASSES)
    message = str(info.value)
    assert repr(name) in message
    assert str(wrong) in message
    assert "image input" in message if entry.input_rank == 3 else "1-D signal input" in message


def test_mlp_takes_any_rank_and_custom_hidden_layers() -> None:
    model = create_model("mlp", (2, 5, 3), 4, {"hidden": [16, 8]})
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 16), (16, 8), (8, 4)]
    halved = create_model("mlp", (2, 5, 3), 4, {"hidden": [16, 8], "width": 0.5})
    assert [m.out_features for m in halved.modules() if isinstance(m, nn.Linear)] == [8, 4, 4]


def test_unknown_zoo_name_suggests_the_closest() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("lenet", (1, 28, 28), 10)
    message = str(info.value)
    assert "unknown model 'lenet'" in message
    assert "did you mean 'lenet5'" in message


def test_unknown_zoo_argument_names_what_is_accepted() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("lenet5", (1, 8, 8), 10, {"depth": 3})
    message = str(info.value)
    assert "does not take argument(s) depth" in message
    assert "width" in message


def test_factory_failure_is_reported_as_one_error() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("lenet5", (1, 8, 8), 10, {"width": "wide"})
    assert "'lenet5' failed with TypeError" in str(info.value)
