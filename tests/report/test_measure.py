"""Measured figures (params, MACs, size, onnxruntime latency), the layer table and enrich_report."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import torch
from torch import nn

from archcompress.models import create_model
from archcompress.report import enrich_report, layer_rows, measure_model
from archcompress.report.measure import state_dict_bytes
from archcompress.space import Candidate, CompressionSpace

SHAPE = (1, 8, 8)


def tiny() -> nn.Module:
    # params: conv 1*4*9 + 4 = 40, linear 4*8*8*10 + 10 = 2570; MACs: conv 4*8*8*9 = 2304, linear 2560
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))


def test_measure_model_counts_and_times_a_small_model() -> None:
    measured = measure_model(tiny(), SHAPE, repeats=5, warmup=1)
    assert measured["params"] == 40 + 2570
    assert measured["macs"] == 2304 + 2560
    buffer = io.BytesIO()
    torch.save(dict(tiny().state_dict()), buffer)  # as save_student writes model.pt
    assert measured["state_dict_bytes"] == state_dict_bytes(tiny()) == len(buffer.getvalue())
    assert measured["state_dict_bytes"] > 4 * measured["params"]  # float32 weights plus the zip container
    assert set(measured["latency_ms"]) == {"1", "64"}
    assert all(0 < ms < 1000 for ms in measured["latency_ms"].values())
    assert measured["latency"]["runs"] == {"1": 5, "64": 5}
    assert measured["latency"]["threads"] == 1
    assert "onnxruntime" in measured["latency"]["runtime"]
    assert "latency_error" not in measured
    json.dumps(measured)  # goes into report.json as it is


def test_measure_model_records_why_latency_is_missing() -> None:
    class BatchSizeScale(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) * int(x.shape[0])  # the exported graph fails at other batch sizes

    measured = measure_model(BatchSizeScale(), SHAPE, repeats=1)
    assert measured["latency_ms"] == {}
    assert "batch size" in measured["latency_error"]
    assert measured["params"] == 0 and measured["macs"] == 0


@pytest.fixture(scope="module")
def resnet_space() -> CompressionSpace:
    torch.manual_seed(0)
    return CompressionSpace.from_model(create_model("resnet20", (3, 8, 8), 10, {}), (3, 8, 8))


def check_rows_against_plan(space: CompressionSpace, candidate: Candidate, rows: list[dict[str, Any]]) -> None:
    plan = space.plan(candidate)
    assert [r["index"] for r in rows] == list(range(len(space.units)))
    leaves = [r for r in rows if r["kind"] != "block"]  # a block's params are its children's
    assert sum(r["teacher_params"] for r in leaves) == space.teacher_cost.params
    assert sum(r["student_params"] for r in leaves) == plan.params
    for row, unit in zip(rows, space.units, strict=True):
        assert row["name"] == unit.name and row["teacher_channels"] == unit.out_shape[0]
        assert (row["student_channels"] is None) == (not row["kept"])
        if unit.kind in ("conv", "linear") and row["kept"]:
            (placed,) = [p for p in plan.layers if p.layer == unit.layers[0]]
            assert row["student_channels"] == placed.out_shape[0]


def test_layer_rows_of_the_teacher_candidate_keep_everything(resnet_space: CompressionSpace) -> None:
    rows = layer_rows(resnet_space, resnet_space.teacher_candidate())
    assert all(r["kept"] and r["student_channels"] == r["teacher_channels"] for r in rows)
    assert all(r["student_params"] == r["teacher_params"] for r in rows)
    assert {r["depth"] for r in rows} == {0, 1}  # block bodies are nested one level
    check_rows_against_plan(resnet_space, resnet_space.teacher_candidate(), rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_rows_match_the_plan_of_random_candidates(resnet_space: CompressionSpace, seed: int) -> None:
    candidate = resnet_space.sample(seed)
    rows = layer_rows(resnet_space, candidate)
    check_rows_against_plan(resnet_space, candidate, rows)
    assert any(not r["kept"] for r in rows)
    removed_blocks = [r for r in rows if r["kind"] == "block" and not r["kept"]]
    for block in removed_blocks:  # everything inside a removed block is removed too
        unit = resnet_space.units[block["index"]]
        assert not any(rows[child]["kept"] for child in (*unit.body, *unit.shortcut))


def test_layer_rows_report_shrunk_kernels() -> None:
    torch.manual_seed(0)
    space = CompressionSpace.from_model(create_model("lenet5", (1, 28, 28), 10, {}), (1, 28, 28), kernel_ratios=(0.6,))
    candidate = space.uniform_candidate(1.0)
    candidate = Candidate(candidate.keep, candidate.ratios, (0.6,) * len(space.kernel_units))
    convs = [r for r in layer_rows(space, candidate) if r["kind"] == "conv"]
    assert [(r["teacher_kernel"], r["student_kernel"]) for r in convs] == [([5, 5], [3, 3])] * len(convs)


def test_enrich_report_adds_measured_figures_and_layers_without_changing_its_input() -> None:
    torch.manual_seed(0)
    teacher = create_model("lenet5", SHAPE, 10, {})
    space = CompressionSpace.from_model(teacher, SHAPE)
    candidate = space.uniform_candidate(0.5)
    student = space.build(candidate).module
    report = {"complete": True, "teacher": {"params": 1}, "student": {"candidate": candidate.to_dict()}}
    before = json.dumps(report, sort_keys=True)
    enriched = enrich_report(report, teacher, student, SHAPE, space=space, repeats=2)
    assert json.dumps(report, sort_keys=True) == before
    assert enriched["teacher"]["params"] == 1  # existing keys kept
    assert enriched["teacher"]["measured"]["params"] > enriched["student"]["measured"]["params"] > 0
    assert set(enriched["student"]["measured"]["latency_ms"]) == {"1", "64"}
    assert enriched["layers"] == layer_rows(space, candidate)
    json.loads(json.dumps(enriched))
    assert "layers" not in enrich_report(report, teacher, student, SHAPE, repeats=1)
