"""`archcompress report` and `archcompress export` on a run that `compress` really wrote (tiny budget)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from archcompress.export import INPUT_NAME, load_torchscript
from archcompress.space import load_student
from cli_helpers import TINY_RANDOM, assert_one_line_error, invoke

TINY = TINY_RANDOM


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """teacher -> compress, through the CLI, with the teacher-logit cache in a temporary home."""
    base = tmp_path_factory.mktemp("cli-results")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHCOMPRESS_HOME", str(base / "home"))
        teacher = base / "teacher.pt"
        trained = invoke(["train-teacher", "--model", "lenet5", "--dataset", "digits", "--epochs", "1",
                          "--no-augment", "--device", "cpu", "--out", teacher])  # fmt: skip
        assert trained.exit_code == 0, (trained.output, trained.exception)
        compressed = invoke(["compress", teacher, "--out", base / "run", *TINY])
        assert compressed.exit_code == 0, (compressed.output, compressed.exception)
        yield base / "run"
    torch.set_num_threads(before)


@pytest.mark.slow
def test_compress_writes_every_file_of_the_run_directory(run_dir: Path) -> None:
    """The run directory of the [results] spec: each file exists and is valid."""
    from html.parser import HTMLParser

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from archcompress.config import CompressConfig
    from archcompress.evaluate import ResultStore

    config = CompressConfig.from_yaml(run_dir / "config.yaml")  # every setting, defaults included
    assert config.budget == 3 and config.out == str(run_dir)
    assert len(ResultStore(run_dir / "store.sqlite").query()) == 3
    report = json.loads((run_dir / "report.json").read_text())
    assert report["complete"] is True
    for side in ("teacher", "student"):
        measured = report[side]["measured"]
        assert measured["params"] == report[side]["params"] and measured["state_dict_bytes"] > 0
        assert set(measured["latency_ms"]) == {"1", "64"} and all(v > 0 for v in measured["latency_ms"].values())
    assert report["layers"] and {"kept", "teacher_channels", "student_channels"} <= set(report["layers"][0])
    assert report["compression"]["params"] == pytest.approx(report["teacher"]["params"] / report["student"]["params"])

    text = (run_dir / "report.html").read_text()
    HTMLParser().feed(text)  # raises on nothing, but must not hang or fail on our markup
    assert text.lstrip().lower().startswith("<!doctype html>") and "</html>" in text
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) == 2 and all(Image.open(io.BytesIO(base64.b64decode(d))).size[0] > 100 for d in images)

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"search/reward", "search/best_reward", "search/val_accuracy", "search/compression"} <= set(tags)
    assert len(events.Scalars("search/reward")) == 3
    assert "candidate" in (run_dir / "log.txt").read_text()
    student = load_student(run_dir / "student")
    assert sum(p.numel() for p in student.parameters()) == report["student"]["params"]


@pytest.mark.slow
def test_report_command_writes_the_html_next_to_the_run(run_dir: Path) -> None:
    (run_dir / "report.html").unlink()  # written by compress: the command must write it again
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = invoke(["report", run_dir])
    assert result.exit_code == 0, (result.output, result.exception)
    html = run_dir / "report.html"
    assert f"report written to {html}" in result.stdout
    text = html.read_text()
    report = json.loads((run_dir / "report.json").read_text())
    assert "<table class='comparison'>" in text and "<table class='layers'>" in text
    assert f"{100 * report['student']['test_accuracy']:.2f}%" in text
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) == 2
    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG"
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "report.html"}
    assert after == before  # the run itself is left alone


@pytest.mark.slow
def test_report_command_combines_runs_into_out(run_dir: Path, tmp_path: Path) -> None:
    result = invoke(["report", run_dir, run_dir, "--out", tmp_path / "both.html"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "<table class='overview'>" in (tmp_path / "both.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_command_matches_the_student(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"student.{fmt}"
    result = invoke(["export", run_dir, "--format", fmt, "--out", out])
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"student exported to {out}" in result.stdout
    student = load_student(run_dir / "student")
    for batch in (1, 5):
        x = torch.randn(batch, *student.arch.input_shape)
        with torch.no_grad():
            expected = student(x).numpy()
        if fmt == "onnx":
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            actual = session.run(None, {INPUT_NAME: x.numpy()})[0]
        else:
            with torch.no_grad():
                actual = load_torchscript(out)(x).numpy()
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


def test_report_needs_out_for_several_runs(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["report", tmp_path / "a", tmp_path / "b"]), "--out")


def test_report_of_a_missing_run(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["report", tmp_path / "missing"]), "does not exist")


def test_export_errors(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["export", tmp_path, "--format", "tflite"]), "unknown export format 'tflite'")
    assert_one_line_error(invoke(["export", tmp_path, "--format", "onnx"]), "no student/arch.json")
    assert_one_line_error(invoke(["export", tmp_path / "missing", "--format", "onnx"]), "does not exist")
    missing_format = invoke(["export", tmp_path])
    assert missing_format.exit_code == 2 and "--format" in missing_format.output
