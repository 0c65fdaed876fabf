"""`archcompress inspect`: unit table of a checkpoint or a model reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archcompress.api import train_teacher
from archcompress.cli import app
from archcompress.distill import TrainConfig

runner = CliRunner()


def test_inspect_reference_json_totals_match_the_model() -> None:
    result = runner.invoke(app, ["inspect", "lenet5", "--input-shape", "1,8,8", "--num-classes", "10", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    from archcompress.models import create_model

    model = create_model("lenet5", (1, 8, 8), 10)
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert data["input_shape"] == [1, 8, 8]
    kinds = [row["kind"] for row in data["rows"]]
    assert kinds.count("conv") == 2 and kinds.count("linear") == 3
    assert data["rows"][-1]["removable"] is False  # the classifier is never removed


def test_inspect_checkpoint_table(tmp_path: Path) -> None:
    checkpoint = tmp_path / "t.pt"
    train_teacher("vgg11", "digits", checkpoint, model_kwargs={"width": 0.125}, train=TrainConfig(epochs=1))
    result = runner.invoke(app, ["inspect", str(checkpoint)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "features.0" in result.stdout and "classifier" in result.stdout
    assert "removable" in result.stdout and "shrink groups" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["inspect", "torchvision:resnet18"], "--input-shape"),
        (["inspect", "lenet5", "--input-shape", "1,x,8"], "C,H,W"),
        (["inspect", "lenet5", "--input-shape", "1,8"], "image input"),
    ],
)
def test_inspect_errors_are_one_line(args: list[str], words: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
