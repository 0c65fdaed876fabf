"""Export a student (or any module) to ONNX or TorchScript, for inference without archcompress.

ONNX files come from the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the default
since torch 2.9; needs the ``onnx`` and ``onnxscript`` packages), at opset :data:`ONNX_OPSET`, with one input
``input`` of shape ``(batch, *input_shape)`` whose batch axis is dynamic and one output ``logits`` of shape
``(batch, num_classes)``. TorchScript files come from ``torch.jit.trace`` (deprecated by torch 2.14 in favour
of ``torch.export``, still loadable with ``torch.jit.load``); both are checked against the module at two
batch sizes before anything is written, and written atomically.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from archcompress.errors import ArchcompressError, first_line
from archcompress.rundir import STUDENT_DIR
from archcompress.runtime import atomic_open
from archcompress.space.student import load_student
from archcompress.space.util import eval_mode

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
ONNX_OPSET = 20  # what torch 2.14's exporter emits natively; onnxruntime >= 1.17 runs it
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
_EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so the example batch must be larger
_CHECK_BATCHES = (1, 5)  # an exported file must match the module at these batch sizes
_TOLERANCE = 1e-4


def export_student(run_dir: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str] | None = None) -> Path:
    """Export the student of a run directory; ``out`` defaults to ``RUN/student/model.onnx`` or
    ``RUN/student/model.torchscript.pt``. Returns the path written."""
    check_format(fmt)
    run = Path(run_dir)
    if not run.is_dir():
        raise ArchcompressError(f"run directory {run} does not exist: pass the --out of an `archcompress compress` run")
    student_dir = run / STUDENT_DIR
    if not (student_dir / "arch.json").is_file():
        raise ArchcompressError(
            f"{run} has no {STUDENT_DIR}/arch.json: the run has not finished (its student is saved last); "
            "finish it with `archcompress compress --resume --out RUN`"
        )
    student = load_student(student_dir)
    path = Path(out) if out is not None else student_dir / DEFAULT_FILES[fmt]
    return export_module(student, student.arch.input_shape, fmt, path)


def check_format(fmt: str) -> None:
    """Refuse an unknown export format."""
    if fmt not in FORMATS:
        raise ArchcompressError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


def export_module(module: nn.Module, input_shape: Sequence[int], fmt: str, path: str | os.PathLike[str]) -> Path:
    """Export ``module`` (per-sample ``input_shape``, e.g. ``(3, 32, 32)``) as ``fmt`` to ``path``, atomically."""
    check_format(fmt)
    target = Path(path)
    if fmt == "onnx":
        data = onnx_bytes(module, input_shape)
        with atomic_open(target, "wb") as handle:
            handle.write(data)
    else:
        traced = torchscript_module(module, input_shape)
        with atomic_open(target, "wb") as handle, _quiet_jit():
            torch.jit.save(traced, handle)
    return target


def onnx_bytes(module: nn.Module, input_shape: Sequence[int]) -> bytes:
    """The serialised ONNX model of ``module`` in eval mode on CPU, with a dynamic batch axis."""
    import onnx  # noqa: F401  the exporter needs onnx and onnxscript: fail here with a clear message

    shape = tuple(int(d) for d in input_shape)
    cpu = _on_cpu(module)
    example = torch.randn(_EXAMPLE_BATCH, *shape)
    batch = torch.export.Dim("batch", min=1)
    try:
        with eval_mode(cpu), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                cpu,
                (example,),
                None,
                dynamo=True,
                verbose=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
            )
        assert program is not None  # returned when f is None
        data = program.model_proto.SerializeToString()
    except Exception as exc:  # the exporter raises many types; all mean "this module cannot be exported"
        raise ArchcompressError(
            f"cannot export {type(module).__name__} to ONNX ({first_line(exc)}): its forward must be traceable by "
            "torch.export with a dynamic batch size; try --format torchscript"
        ) from exc
    _check_onnx(cpu, shape, data)
    return data


def torchscript_module(module: nn.Module, input_shape: Sequence[int]) -> torch.jit.ScriptModule:
    """``module`` traced with ``torch.jit.trace`` in eval mode on CPU and checked at two batch sizes."""
    shape = tuple(int(d) for d in input_shape)
    cpu = _on_cpu(module)
    with eval_mode(cpu), torch.no_grad():  # the trace records eval behaviour (BN running statistics)
        try:
            with _quiet_jit():
                traced = torch.jit.trace(cpu, torch.randn(_EXAMPLE_BATCH, *shape))
        except Exception as exc:  # tracing errors come as RuntimeError, TypeError, TracingCheckError ...
            raise ArchcompressError(
                f"cannot trace {type(module).__name__} to TorchScript ({first_line(exc)}); try --format onnx"
            ) from exc
        for size in _CHECK_BATCHES:
            x = torch.randn(size, *shape)
            try:
                actual = traced(x)
            except Exception as exc:  # e.g. a reshape to the example's batch size, frozen into the trace
                raise ArchcompressError(
                    f"the TorchScript trace of {type(module).__name__} fails at batch size {size} "
                    f"({first_line(exc)}): its forward depends on the batch size; nothing was written"
                ) from exc
            _check_close("TorchScript", cpu(x), actual, size)
    return traced


def _on_cpu(module: nn.Module) -> nn.Module:
    """The module itself when it lives on the CPU, else a CPU copy (the caller's module is never moved)."""
    if all(t.device.type == "cpu" for t in (*module.parameters(), *module.buffers())):
        return module
    return copy.deepcopy(module).cpu()


def _check_onnx(module: nn.Module, shape: tuple[int, ...], data: bytes) -> None:
    """Run the ONNX model with onnxruntime and compare it with the module at two batch sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for size in _CHECK_BATCHES:
        x = torch.randn(size, *shape)
        with eval_mode(module), torch.no_grad():
            expected = module(x)
        try:
            (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArchcompressError(
                f"the ONNX export of {type(module).__name__} fails in onnxruntime at batch size {size} "
                f"({first_line(exc)}): its forward depends on the batch size; nothing was written"
            ) from exc
        _check_close("ONNX", expected, torch.from_numpy(actual), size)


def _check_close(kind: str, expected: torch.Tensor, actual: torch.Tensor, batch: int) -> None:
    if expected.shape != actual.shape or not torch.allclose(expected, actual, atol=_TOLERANCE, rtol=_TOLERANCE):
        difference = (expected - actual).abs().max().item() if expected.shape == actual.shape else "shape"
        raise ArchcompressError(
            f"the {kind} export differs from the PyTorch module at batch size {batch} (max difference "
            f"{difference}, shapes {tuple(expected.shape)} vs {tuple(actual.shape)}): the forward depends on the "
            "batch size or is not deterministic in eval mode; nothing was written"
        )


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch 2.14's FutureWarning that TorchScript is deprecated: the user asked for it by name."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


def load_torchscript(data: bytes | str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """Load an exported TorchScript file (path or bytes) without the deprecation warning."""
    with _quiet_jit():
        source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
        return torch.jit.load(source, map_location="cpu")
