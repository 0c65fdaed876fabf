"""Measured figures of a model (size, MACs, CPU latency) and the teacher-to-student layer table.

Latency is the median wall time of ``session.run`` on a single-threaded onnxruntime CPU session
(``intra_op_num_threads = inter_op_num_threads = 1``, sequential execution, all graph optimisations), after a
warm-up, on the model exported as by ``archcompress export``. One thread makes numbers comparable between
machines with different core counts and between runs sharing a machine; it is not the fastest setting.
Warm-up and timing each stop after :data:`MAX_SECONDS` (keeping at least 3 timed runs), so big models at
batch 64 take seconds, not minutes.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.export import INPUT_NAME, onnx_bytes
from archcompress.space import Candidate, CompressionSpace, count_params, measure_macs
from archcompress.space.ir import ConvSpec

LATENCY_BATCHES: tuple[int, ...] = (1, 64)
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3
MAX_SECONDS = 2.0  # per model and batch size: big models stop after this long (at least 3 timed runs)


def state_dict_bytes(module: nn.Module) -> int:
    """Size in bytes of ``torch.save(module.state_dict())``: what the weights take on disk."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getbuffer().nbytes


def onnx_latency_ms(
    model: bytes,
    input_shape: Sequence[int],
    batch: int,
    *,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    max_seconds: float = MAX_SECONDS,
) -> tuple[float, int]:
    """Median milliseconds per ``session.run`` of a serialised ONNX model on a random batch, and the runs timed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)}
    warm_until = time.perf_counter() + max_seconds
    for _ in range(warmup):  # a slow model needs fewer warm-up runs: one already warms the caches
        session.run(None, feed)
        if time.perf_counter() > warm_until:
            break
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0, len(times)


def measure_model(
    module: nn.Module,
    input_shape: Sequence[int],
    *,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    batches: Sequence[int] = LATENCY_BATCHES,
) -> dict[str, Any]:
    """Params, MACs per sample, state-dict bytes and onnxruntime CPU latency of ``module`` (JSON-able).

    Returns ``{"params", "macs", "state_dict_bytes", "latency_ms": {"1": ms, "64": ms}, "latency": {...}}``;
    ``latency`` records how it was measured. A module the ONNX exporter cannot handle gets an empty
    ``latency_ms`` and a ``latency_error`` message instead of failing the whole measurement.
    """
    import onnxruntime as ort

    if repeats < 1:
        raise ArchcompressError(f"repeats must be at least 1, got {repeats}")
    shape = tuple(int(d) for d in input_shape)
    cpu = module if all(p.device.type == "cpu" for p in module.parameters()) else copy.deepcopy(module).cpu()
    measured: dict[str, Any] = {
        "params": count_params(cpu),
        "macs": measure_macs(cpu, shape),
        "state_dict_bytes": state_dict_bytes(cpu),
        "latency_ms": {},
        "latency": {
            "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
            "threads": 1,
            "statistic": "median",
            "warmup": warmup,
            "runs": {},
        },
    }
    try:
        model = onnx_bytes(cpu, shape)
    except ArchcompressError as exc:
        measured["latency_error"] = str(exc)
        return measured
    for batch in batches:
        ms, runs = onnx_latency_ms(model, shape, batch, repeats=repeats, warmup=warmup)
        measured["latency_ms"][str(batch)] = ms
        measured["latency"]["runs"][str(batch)] = runs
    return measured


def layer_rows(space: CompressionSpace, candidate: Candidate) -> list[dict[str, Any]]:
    """One row per teacher unit (pre-order): kept or removed, output channels and params teacher -> student.

    Rows: ``index, name, kind, depth`` (blocks nesting), ``kept``, ``teacher_channels``, ``student_channels``
    (output channels, or features once flat; None when removed), ``teacher_params``, ``student_params``,
    ``teacher_kernel`` and ``student_kernel`` (convs only, else None).
    """
    plan = space.plan(candidate)
    placed = {p.layer: p for p in plan.layers}
    units = space.units

    def layer_ids(index: int, body_only: bool = False) -> list[int]:
        unit = units[index]
        if unit.kind != "block":
            return list(unit.layers)
        children = unit.body if body_only else (*unit.body, *unit.shortcut)
        return [layer for child in children for layer in layer_ids(child)]

    rows = []
    for unit in units:
        ids = layer_ids(unit.index)
        present = [placed[i] for i in ids if i in placed]
        # a block's output is its body's; a block whose body was removed is its shortcut alone
        outputs = [placed[i] for i in layer_ids(unit.index, body_only=True) if i in placed] or present
        depth, parent = 0, unit.parent
        while parent is not None:
            depth, parent = depth + 1, units[parent].parent
        teacher_spec = space.layers[unit.layers[0]].spec if unit.layers else None
        student_spec = placed[unit.layers[0]].spec if unit.layers and unit.layers[0] in placed else None
        rows.append(
            {
                "index": unit.index,
                "name": unit.name,
                "kind": unit.kind,
                "depth": depth,
                "kept": bool(present),
                "teacher_channels": int(unit.out_shape[0]),
                "student_channels": int(outputs[-1].out_shape[0]) if outputs else None,
                "teacher_params": unit.params,
                "student_params": sum(p.params for p in present),
                "teacher_kernel": _kernel(teacher_spec),
                "student_kernel": _kernel(student_spec),
            }
        )
    return rows


def _kernel(spec: object) -> list[int] | None:
    return list(spec.kernel) if isinstance(spec, ConvSpec) else None


def enrich_report(
    report: dict[str, Any],
    teacher_module: nn.Module,
    student_module: nn.Module,
    input_shape: Sequence[int],
    *,
    space: CompressionSpace | None = None,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, Any]:
    """A copy of ``report`` with ``teacher.measured`` and ``student.measured`` (see :func:`measure_model`) and,
    when the teacher's ``space`` is given, ``layers`` (see :func:`layer_rows` of ``student.candidate``)."""
    enriched = dict(report)
    enriched["teacher"] = {
        **report.get("teacher", {}),
        "measured": measure_model(teacher_module, input_shape, repeats=repeats),
    }
    enriched["student"] = {
        **report.get("student", {}),
        "measured": measure_model(student_module, input_shape, repeats=repeats),
    }
    candidate = report.get("student", {}).get("candidate")
    if space is not None and candidate is not None:
        enriched["layers"] = layer_rows(space, Candidate.from_dict(candidate))
    return enriched
