"""Saving and loading students: arch.json + model.pt, rebuilt without the teacher's code."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space import StudentArch, load_student, save_student
from archcompress.space.student import ARCH_FILE, WEIGHTS_FILE


@pytest.mark.parametrize(
    ("ref", "shape"),
    [
        ("torchvision:mobilenet_v2", (3, 32, 32)),
        ("resnet20", (3, 32, 32)),
        ("cnn1d", (1, 40)),
        ("sequential", (3, 16, 16)),
    ],
)
def test_round_trip_gives_identical_outputs(teacher_space, tmp_path, ref, shape) -> None:
    _, space = teacher_space(ref, shape)
    result = space.build(space.sample(7))
    saved = save_student(result, tmp_path / "student", metadata={"val_accuracy": 0.5})
    loaded = load_student(saved)
    x = torch.randn(3, *shape)
    result.module.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.module(x))
    assert not loaded.training and loaded.arch == result.arch
    document = json.loads((saved / ARCH_FILE).read_text())
    assert document["params"] == result.params
    assert document["metadata"] == {"val_accuracy": 0.5, "candidate": result.candidate.to_dict()}
    assert StudentArch.from_dict(document["arch"]) == result.arch


def test_a_loaded_student_can_be_saved_again(teacher_space, tmp_path) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    first = load_student(save_student(space.build(space.sample(1)).module, tmp_path / "a"))
    second = load_student(save_student(first, tmp_path / "b"))
    assert (tmp_path / "a" / WEIGHTS_FILE).read_bytes() == (tmp_path / "b" / WEIGHTS_FILE).read_bytes()
    assert second.arch == first.arch


def test_weights_from_another_save_are_refused(teacher_space, tmp_path) -> None:
    _, space = teacher_space("vgg11", (1, 28, 28))
    save_student(space.build(space.sample(1)), tmp_path / "a")
    save_student(space.build(space.sample(2)), tmp_path / "b")
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes((tmp_path / "b" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ArchcompressError, match="does not match"):
        load_student(tmp_path / "a")


def test_only_built_students_can_be_saved(tmp_path) -> None:
    with pytest.raises(ArchcompressError, match="only modules built by"):
        save_student(nn.Linear(2, 2), tmp_path)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_missing_or_foreign_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(ArchcompressError, match="does not exist"):
        load_student(tmp_path)
    (tmp_path / ARCH_FILE).write_text('{"format": "something else"}')
    with pytest.raises(ArchcompressError, match="not an archcompress student"):
        load_student(tmp_path)
