"""ONNX and TorchScript export: outputs equal the PyTorch student at several batch sizes; clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.export import (
    DEFAULT_FILES,
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAME,
    export_module,
    export_student,
    load_torchscript,
)
from archcompress.models import create_model
from archcompress.space import CompressionSpace, load_student, save_student

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding only a student: a narrowed lenet5 with inherited (non-trivial) weights."""
    torch.manual_seed(0)
    teacher = create_model("lenet5", SHAPE, 10, {})
    space = CompressionSpace.from_model(teacher, SHAPE)
    run = tmp_path_factory.mktemp("run")
    save_student(space.build(space.uniform_candidate(0.5)), run / "student")
    return run


@pytest.fixture(scope="module")
def onnx_path(run_dir: Path) -> Path:
    return export_student(run_dir, "onnx")


@pytest.fixture(scope="module")
def torchscript_path(run_dir: Path) -> Path:
    return export_student(run_dir, "torchscript")


def pytorch_logits(run: Path, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return load_student(run / "student")(x).numpy()


def test_default_paths_are_inside_the_student_folder(run_dir: Path, onnx_path: Path, torchscript_path: Path) -> None:
    assert onnx_path == run_dir / "student" / DEFAULT_FILES["onnx"]
    assert torchscript_path == run_dir / "student" / DEFAULT_FILES["torchscript"]
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == [
        "arch.json", "model.onnx", "model.pt", "model.torchscript.pt"
    ]  # fmt: skip


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_equals_the_student(run_dir: Path, onnx_path: Path, batch: int) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, *SHAPE)
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    assert logits.shape == (batch, 10)
    np.testing.assert_allclose(logits, pytorch_logits(run_dir, x), atol=1e-4, rtol=0)


def test_onnx_file_has_a_dynamic_batch_axis_and_the_documented_opset(onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == INPUT_NAME
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == list(SHAPE)
    assert {o.domain: o.version for o in model.opset_import}[""] == ONNX_OPSET


@pytest.mark.parametrize("batch", [1, 5])
def test_torchscript_equals_the_student(run_dir: Path, torchscript_path: Path, batch: int) -> None:
    loaded = load_torchscript(torchscript_path)
    x = torch.randn(batch, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), pytorch_logits(run_dir, x), atol=1e-4, rtol=0)


def test_export_module_uses_eval_mode_and_leaves_the_module_as_it_was(tmp_path: Path) -> None:
    # batch norm in train mode would normalise with batch statistics: the export must use running ones
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip
    with torch.no_grad():
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    module.train()
    out = export_module(module, (3, 6, 6), "onnx", tmp_path / "nested" / "m.onnx")
    assert module.training and all(m.training for m in module.modules())
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no temporary file left behind
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {INPUT_NAME: x.numpy()})[0], expected, atol=1e-4, rtol=0)


class BatchSizeScale(nn.Module):
    """``int(x.shape[0])`` is frozen into a trace as the example's batch size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * int(x.shape[0])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_refuses_a_module_that_depends_on_the_batch_size(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ArchcompressError) as caught:
        export_module(BatchSizeScale(), SHAPE, fmt, tmp_path / "m")
    message = str(caught.value)
    assert "\n" not in message
    assert "batch size" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "fmt", "words"),
    [
        (lambda root: root / "missing", "onnx", ["does not exist"]),
        (lambda root: root, "onnx", ["no student/arch.json", "--resume"]),
        (lambda root: root, "tflite", ["unknown export format 'tflite'", "onnx, torchscript"]),
    ],
    ids=["missing-run", "no-student", "unknown-format"],
)
def test_export_errors_are_one_line(tmp_path: Path, make: Callable[[Path], Path], fmt: str, words: list[str]) -> None:
    with pytest.raises(ArchcompressError) as caught:
        export_student(make(tmp_path), fmt)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert list(tmp_path.iterdir()) == []
