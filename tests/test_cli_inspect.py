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


@pytest.mark.parametrize("name", ["missing.pt", "teacher.pth", "model.ckpt", "runs/demo/teacher", "sub/missing"])
def test_inspect_a_missing_file_says_the_file_does_not_exist(tmp_path: Path, name: str) -> None:
    path = tmp_path / name if "/" in name else Path(name)  # a bare name is relative to the working directory
    assert not path.exists()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert f"checkpoint file {path} does not exist" in lines[0]
    assert "model reference" not in lines[0]


def test_inspect_a_directory_says_it_is_not_a_checkpoint_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is a directory, not a checkpoint file" in result.output


def test_inspect_a_text_file_says_it_is_not_a_pytorch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("hello\n")
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line
    assert f"checkpoint {path} is not a PyTorch file (neither a zip archive nor a pickle)" in line
    assert "(101)" not in line


def test_inspect_a_zoo_name_still_asks_for_an_input_shape() -> None:
    result = runner.invoke(app, ["inspect", "vgg11"])
    assert result.exit_code == 2
    assert "'vgg11' is a model reference" in result.output and "--input-shape" in result.output
