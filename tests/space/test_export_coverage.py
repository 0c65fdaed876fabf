"""Students with gates, concatenations, slices, shuffles and channel LayerNorms export to ONNX and
TorchScript (``export_module`` itself checks the exported outputs against the module's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archcompress.export import export_module

_SHAPES = {
    "se_residual": (3, 16, 16),
    "gated": (3, 8, 8),
    "dense": (3, 16, 16),
    "shuffle": (3, 8, 8),
    "convnext": (3, 16, 16),
}


@pytest.mark.parametrize("name", ["se_residual", "gated", "dense", "shuffle", "convnext"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_half_width_students_export(teacher_space, tmp_path: Path, name: str, fmt: str) -> None:
    _, space = teacher_space(name, _SHAPES[name])
    student = space.build(space.uniform_candidate(0.5)).module.eval()
    path = export_module(student, space.input_shape, fmt, tmp_path / f"student.{'onnx' if fmt == 'onnx' else 'pt'}")
    assert path.is_file() and path.stat().st_size > 0
