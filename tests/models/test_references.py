"""Model references beyond the zoo: torchvision:NAME, file.py:Factory, package.module:Factory, and check_model_io."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.hub
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.models import check_model_io, create_model, reference_kind, torchvision_classifiers
from archcompress.runtime import seed_everything

USER_MODELS = """
    import math

    from torch import nn


    def make(input_shape, num_classes, hidden=16):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )


    def fixed():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


    def readme_style(num_classes: int, in_channels: int = 1, width: int = 32):
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(width, num_classes))


    def anything(**kwargs):
        model = nn.Linear(1, 1)
        model.received = kwargs
        return model


    def not_a_module(num_classes):
        return {"num_classes": num_classes}


    def broken(num_classes):
        raise ValueError("no good")


    NOT_CALLABLE = 3
"""


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    return write(tmp_path / "user_models.py", USER_MODELS)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A uniquely named package on sys.path holding ``<pkg>.nets`` (removed from sys.modules afterwards)."""
    name = f"acuser_{uuid.uuid4().hex[:10]}"
    write(tmp_path / "pkgs" / name / "__init__.py", "")
    write(tmp_path / "pkgs" / name / "nets.py", USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def logits(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, *shape))


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("lenet5", "zoo"),
        ("torchvision:resnet18", "torchvision"),
        ("timm:resnet18", "timm"),
        ("nets.py:make", "file"),
        ("models/nets:make", "file"),
        ("~/x/nets.py:make", "file"),
        ("mypkg.nets:make", "module"),
        ("mypkg:make", "module"),
    ],
)
def test_reference_kind(ref: str, kind: str) -> None:
    assert reference_kind(ref) == kind


# --- torchvision --------------------------------------------------------------------------------------------


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch weights fails the test loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_torchvision_resnet18_adapts_the_first_conv_to_one_channel(no_downloads: None) -> None:
    model = create_model("torchvision:resnet18", (1, 28, 28), 7)
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 64
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.fc.out_features == 7
    assert logits(model, (1, 28, 28)).shape == (2, 7)
    check_model_io(model, "torchvision:resnet18", (1, 28, 28), 7)


def test_torchvision_rgb_input_keeps_the_original_conv(no_downloads: None) -> None:
    model = create_model("torchvision:resnet18", (3, 32, 32), 10)
    assert model.conv1.in_channels == 3
    assert logits(model, (3, 32, 32)).shape == (2, 10)


def test_torchvision_never_loads_pretrained_weights(no_downloads: None) -> None:
    # weights= is dropped (never downloaded); random init means two seeds give different weights.
    seed_everything(0)
    first = create_model("torchvision:resnet18", (3, 32, 32), 10, {"weights": "DEFAULT"})
    seed_everything(1)
    second = create_model("torchvision:resnet18", (3, 32, 32), 10, {"weights": "DEFAULT"})
    assert not torch.equal(first.layer1[0].conv1.weight, second.layer1[0].conv1.weight)


def test_torchvision_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("torchvision:resnet181", (3, 32, 32), 10)
    message = str(info.value)
    assert "unknown torchvision classification model 'resnet181'" in message
    assert "did you mean" in message and "'resnet18'" in message


def test_torchvision_nosuch_lists_the_known_models() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("torchvision:nosuch", (3, 32, 32), 10)
    message = str(info.value)
    assert "'nosuch'" in message
    assert "resnet18" in message and "mobilenet_v2" in message
    assert "resnet18" in torchvision_classifiers()


def test_torchvision_needs_an_image_input() -> None:
    with pytest.raises(ArchcompressError, match=r"needs an image input \(C, H, W\)"):
        create_model("torchvision:resnet18", (1, 40), 10)


def test_torchvision_rejected_argument_is_one_error() -> None:
    with pytest.raises(ArchcompressError, match="torchvision:resnet18 rejected its arguments"):
        create_model("torchvision:resnet18", (3, 32, 32), 10, {"bogus": 1})


# --- timm ---------------------------------------------------------------------------------------------------


def test_timm_model_is_random_and_takes_channels_and_classes(no_downloads: None) -> None:
    timm = pytest.importorskip("timm")
    seed_everything(0)
    first = create_model("timm:resnet18", (1, 28, 28), 7, {"pretrained": True})  # pretrained is dropped
    seed_everything(1)
    second = create_model("timm:resnet18", (1, 28, 28), 7)
    assert isinstance(first, timm.models.ResNet) and first.conv1.in_channels == 1
    assert first.get_classifier().out_features == 7
    assert not torch.equal(first.conv1.weight, second.conv1.weight)  # random init, nothing loaded
    check_model_io(first, "timm:resnet18", (1, 28, 28), 7)


def test_timm_unknown_name_suggests_close_names() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ArchcompressError, match=r"unknown timm model 'resnet181': did you mean .*'resnet18'"):
        create_model("timm:resnet181", (3, 32, 32), 10)


def test_timm_missing_package_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ArchcompressError, match=r"needs the optional package timm: pip install 'archcompress\[timm\]'"):
        create_model("timm:resnet18", (3, 32, 32), 10)


# --- user factories in files --------------------------------------------------------------------------------


def test_file_factory_gets_shape_classes_and_extra_kwargs(user_file: Path) -> None:
    model = create_model(f"{user_file}:make", (1, 8, 8), 5, {"hidden": 12})
    assert model[1].in_features == 64
    assert model[1].out_features == 12
    assert logits(model, (1, 8, 8)).shape == (2, 5)


def test_file_factory_without_standard_parameters(user_file: Path) -> None:
    model = create_model(f"{user_file}:fixed", (1, 8, 8), 10)
    assert logits(model, (1, 8, 8)).shape == (2, 10)


def test_file_factory_with_in_channels_like_the_readme(user_file: Path) -> None:
    model = create_model(f"{user_file}:readme_style", (3, 32, 32), 4, {"width": 8})
    assert model[0].in_channels == 3 and model[0].out_channels == 8
    assert logits(model, (3, 32, 32)).shape == (2, 4)


def test_var_keyword_factory_receives_every_standard_argument(user_file: Path) -> None:
    model = create_model(f"{user_file}:anything", (1, 8, 8), 10, {"extra": 3})
    assert model.received == {"input_shape": (1, 8, 8), "num_classes": 10, "in_channels": 1, "extra": 3}


def test_relative_file_reference(user_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(user_file.parent)
    model = create_model("user_models.py:make", (1, 8, 8), 3)
    assert logits(model, (1, 8, 8)).shape == (2, 3)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{tmp_path}/absent.py:make", (1, 8, 8), 10)
    assert "model file" in str(info.value) and "does not exist" in str(info.value)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def make(:\n    pass\n", ["SyntaxError"]),
        ("import archcompress_no_such_module_xyz\n", ["ModuleNotFoundError", "archcompress_no_such_module_xyz"]),
        ("raise ImportError('needs the foo package')\n", ["ImportError", "needs the foo package"]),
    ],
    ids=["syntax-error", "missing-import", "raises-importerror"],
)
def test_file_that_fails_to_import(tmp_path: Path, source: str, words: list[str]) -> None:
    path = write(tmp_path / "bad.py", source)
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{path}:make", (1, 8, 8), 10)
    message = str(info.value)
    assert "importing model file" in message
    for word in words:
        assert word in message


def test_fixed_file_imports_after_a_failed_attempt(tmp_path: Path) -> None:
    path = write(tmp_path / "flaky.py", "raise ImportError('not yet')\n")
    with pytest.raises(ArchcompressError):
        create_model(f"{path}:make", (1, 8, 8), 10)
    write(path, USER_MODELS)
    assert logits(create_model(f"{path}:make", (1, 8, 8), 10), (1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("attribute", ["mak", "NOT_CALLABLE"])
def test_missing_factory_suggests_close_names(user_file: Path, attribute: str) -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{user_file}:{attribute}", (1, 8, 8), 10)
    message = str(info.value)
    assert f"unknown factory in {str(user_file)!r} {attribute!r}" in message
    assert "make" in message and "readme_style" in message
    if attribute == "mak":
        assert "did you mean 'make'" in message


def test_factory_returning_a_non_module(user_file: Path) -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{user_file}:not_a_module", (1, 8, 8), 10)
    assert "returned dict, not a torch.nn.Module" in str(info.value)


def test_factory_that_raises(user_file: Path) -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{user_file}:broken", (1, 8, 8), 10)
    assert "failed with ValueError: no good" in str(info.value)


def test_unknown_kwarg_for_a_user_factory(user_file: Path) -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model(f"{user_file}:make", (1, 8, 8), 10, {"depth": 2, "hidden": 4})
    message = str(info.value)
    assert "does not take argument(s) depth" in message
    assert "it accepts hidden" in message


# --- user factories in importable modules -------------------------------------------------------------------


def test_module_factory(user_package: str) -> None:
    model = create_model(f"{user_package}.nets:make", (1, 28, 28), 10, {"hidden": 6})
    assert model[1].in_features == 28 * 28 and model[1].out_features == 6
    assert logits(model, (1, 28, 28)).shape == (2, 10)


def test_module_missing_factory_suggests_close_names(user_package: str) -> None:
    with pytest.raises(ArchcompressError, match="did you mean 'fixed'"):
        create_model(f"{user_package}.nets:fixd", (1, 8, 8), 10)


def test_module_that_cannot_be_imported() -> None:
    with pytest.raises(ArchcompressError) as info:
        create_model("archcompress_no_such_pkg.nets:make", (1, 8, 8), 10)
    message = str(info.value)
    assert "cannot import module 'archcompress_no_such_pkg.nets'" in message
    assert "PYTHONPATH" in message


# --- check_model_io -----------------------------------------------------------------------------------------


def test_check_model_io_class_count_mismatch(user_file: Path) -> None:
    model = create_model(f"{user_file}:fixed", (1, 8, 8), 5)  # always 10 outputs
    with pytest.raises(ArchcompressError) as info:
        check_model_io(model, "user:fixed", (1, 8, 8), 5)
    message = str(info.value)
    assert "outputs (2, 10)" in message
    assert "5 classes" in message


def test_check_model_io_input_the_model_cannot_take() -> None:
    model = create_model("lenet5", (1, 28, 28), 10).train()
    with pytest.raises(ArchcompressError) as info:
        check_model_io(model, "lenet5", (3, 32, 32), 10)
    message = str(info.value)
    assert "'lenet5' cannot take inputs of shape (3, 32, 32)" in message
    assert "RuntimeError" in message
    assert model.training  # the mode is restored even on failure


def test_check_model_io_non_tensor_output() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ArchcompressError, match="outputs tuple"):
        check_model_io(Pair(), "pair", (1, 4), 4)
