"""The command line: listings, train-teacher end to end, one-line errors with exit code 2, and --debug."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from rich.console import Console

from archcompress import __version__, cli
from archcompress.checkpoint import load_teacher
from archcompress.data import DataSplits, dataset_sources
from archcompress.distill import evaluate_accuracy
from archcompress.errors import ArchcompressError
from archcompress.models import create_model, torchvision_classifiers, zoo_entries
from cli_helpers import assert_one_line_error, invoke

WIDE = {"COLUMNS": "400"}  # no table wrapping, so every row is one line


def train_args(out: Path, *extra: str, model: str = "lenet5", dataset: str = "digits") -> list[str]:
    return ["train-teacher", "--model", model, "--dataset", dataset, "--out", str(out), *extra]


def row(output: str, first: str) -> str:
    """The table line whose first column is ``first``."""
    matches = [line for line in output.splitlines() if line.split()[:1] == [first]]
    assert len(matches) == 1, f"{first!r} not listed once in:\n{output}"
    return matches[0]


# --- listings -----------------------------------------------------------------------------------------------


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"archcompress {__version__}"


def test_datasets_lists_every_registered_set_with_its_description() -> None:
    result = invoke(["datasets"])
    assert result.exit_code == 0, result.output
    sources = dataset_sources()
    assert {"digits", "mnist5k", "mnist1d", "mnist", "cifar10"} <= {s.name for s in sources}
    for source in sources:
        line = row(result.stdout, source.name)
        assert source.description in line
        assert line.split()[-1] == ("yes" if source.needs_root else "no")
    assert "PATH/train/<class>" in row(result.stdout, "imagefolder:PATH")


def test_models_lists_every_zoo_model_with_its_description() -> None:
    result = invoke(["models"])
    assert result.exit_code == 0, result.output
    for entry in zoo_entries():
        assert entry.description in row(result.stdout, entry.name)
    assert f"any of torchvision's {len(torchvision_classifiers())} classification models" in row(
        result.stdout, "torchvision:NAME"
    )
    assert "nothing downloaded" in row(result.stdout, "timm:NAME")
    assert "nn.Module" in row(result.stdout, "path/to/file.py:Factory")
    assert "importable module" in row(result.stdout, "package.module:Factory")
    assert "width=FLOAT" in result.stdout


# --- train-teacher end to end -------------------------------------------------------------------------------


def test_train_teacher_end_to_end(tmp_path: Path, digits: DataSplits) -> None:
    out = tmp_path / "runs" / "teacher.pt"
    args = train_args(out, "--model-arg", "width=0.5", "--epochs", "2", "--batch-size", "32", "--device", "cpu")
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    match = re.search(r"test accuracy (\d+\.\d\d)%", result.stdout)
    assert match, result.stdout
    assert f"checkpoint written to {out}" in result.stdout
    assert "warning" not in result.stderr  # far above chance

    teacher = load_teacher(out)
    meta = teacher.meta
    assert (meta.model, meta.dataset, meta.epochs, meta.seed) == ("lenet5", "digits", 2, 0)
    assert meta.model_kwargs == {"width": 0.5}
    assert meta.input_shape == (1, 8, 8) and meta.num_classes == 10
    assert meta.library_version == __version__ and meta.torch_version == str(torch.__version__)
    assert meta.params == sum(p.numel() for p in teacher.model.parameters())
    full_width = sum(p.numel() for p in create_model("lenet5", (1, 8, 8), 10).parameters())
    assert meta.params < full_width / 2
    # The checkpoint alone reproduces the reported score.
    assert meta.test_accuracy is not None and meta.test_accuracy > 0.5
    assert evaluate_accuracy(teacher.model, digits.test, torch.device("cpu")) == meta.test_accuracy
    assert float(match.group(1)) == pytest.approx(100 * meta.test_accuracy, abs=0.006)
    assert sorted(p.name for p in out.parent.iterdir()) == ["teacher.pt"]

    # An existing --out is never replaced without --overwrite ...
    before = out.read_bytes()
    refused = invoke(args)
    assert_one_line_error(refused, "already exists", "--overwrite")
    assert out.read_bytes() == before
    # ... and is with it.
    replaced = invoke([*train_args(out, "--epochs", "1", "--device", "cpu"), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert load_teacher(out).meta.epochs == 1
    assert load_teacher(out).meta.model_kwargs == {}


# --- errors -------------------------------------------------------------------------------------------------

FAILING_FACTORY = """
    from torch import nn

    def make(num_classes):
        raise ValueError("weights go in [/tmp/weights] and [bold]here[/bold]")

    def tiny(num_classes):
        return nn.Linear(3, num_classes)

    def chatty(num_classes):
        raise RuntimeError("shapes disagree:\\n  expected 10\\n  got 12")
"""


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(textwrap.dedent(FAILING_FACTORY))
    return path


def test_unknown_model_suggests_the_closest(tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    result = invoke(train_args(out, model="lenett5"))
    assert_one_line_error(result, "unknown model 'lenett5'", "did you mean 'lenet5'")
    assert not out.exists()


def test_unknown_data_set_suggests_the_closest(tmp_path: Path) -> None:
    result = invoke(train_args(tmp_path / "t.pt", dataset="digts"))
    assert_one_line_error(result, "unknown data set 'digts'", "did you mean 'digits'")


def test_cifar10_needs_a_data_root(tmp_path: Path) -> None:
    result = invoke(train_args(tmp_path / "t.pt", model="resnet20", dataset="cifar10"))
    assert_one_line_error(result, "'cifar10'", "--data-root")


def test_data_root_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = invoke(train_args(tmp_path / "t.pt", "--data-root", str(missing), model="resnet20", dataset="cifar10"))
    assert_one_line_error(result, f"--data-root {missing} does not exist", "--download")
    assert not missing.exists()


def test_data_root_in_the_wrong_format(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    result = invoke(train_args(tmp_path / "t.pt", "--data-root", str(root), dataset="mnist"))
    assert_one_line_error(result, "MNIST not found or corrupted", "add --download")
    assert list(root.iterdir()) == []  # nothing was downloaded


def test_user_factory_that_fails_to_import(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import archcompress_no_such_module_xyz\n")
    result = invoke(train_args(tmp_path / "t.pt", model=f"{path}:make"))
    assert_one_line_error(result, "importing model file", "ModuleNotFoundError")


def test_error_text_with_square_brackets_is_printed_verbatim(tmp_path: Path, factories: Path) -> None:
    result = invoke(train_args(tmp_path / "t.pt", model=f"{factories}:make"))
    assert_one_line_error(result, "[/tmp/weights]", "[bold]here[/bold]")


def test_multi_line_error_text_is_joined_into_one_line(tmp_path: Path, factories: Path) -> None:
    result = invoke(train_args(tmp_path / "t.pt", model=f"{factories}:chatty"))
    assert_one_line_error(result, "failed with RuntimeError: shapes disagree: expected 10 got 12")


def test_model_that_cannot_take_the_data(tmp_path: Path, factories: Path) -> None:
    result = invoke(train_args(tmp_path / "t.pt", model=f"{factories}:tiny"))
    assert_one_line_error(result, "cannot take inputs of shape (1, 8, 8)")


@pytest.mark.parametrize(
    ("model_arg", "words"),
    [
        ("width", ["--model-arg 'width' is not KEY=VALUE"]),
        ("=0.5", ["is not KEY=VALUE"]),
        ("width=[1", ["cannot parse the value (expected ',' or ']', but got '<stream end>')"]),
        ("depth=3", ["does not take argument(s) depth", "width"]),
    ],
)
def test_bad_model_arg(tmp_path: Path, model_arg: str, words: list[str]) -> None:
    result = invoke(train_args(tmp_path / "t.pt", "--model-arg", model_arg))
    assert_one_line_error(result, *words)


def test_device_cuda_without_cuda(tmp_path: Path, no_cuda: None) -> None:
    result = invoke(train_args(tmp_path / "t.pt", "--device", "cuda"))
    assert_one_line_error(result, "--device cuda", "no CUDA GPU")


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--epochs", "0"], ["--epochs must be at least 1, got 0"]),
        (["--batch-size", "0"], ["--batch-size must be at least 1"]),
        (["--lr", "0"], ["--lr must be a positive number"]),
        (["--optimizer", "rmsprop"], ["--optimizer must be sgd or adam"]),
        (["--val-fraction", "1.5"], ["--val-fraction must be between 0 and 1"]),
    ],
)
def test_impossible_training_settings(tmp_path: Path, option: list[str], words: list[str]) -> None:
    out = tmp_path / "t.pt"
    assert_one_line_error(invoke(train_args(out, *option)), *words)
    assert not out.exists()


def test_out_that_is_a_directory(tmp_path: Path) -> None:
    result = invoke(train_args(tmp_path, "--overwrite"))
    assert_one_line_error(result, "is a directory")


def test_diverged_training_is_one_error_and_the_progress_display_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    monkeypatch.setattr(cli, "stderr_console", lambda: terminal)
    out = tmp_path / "t.pt"
    result = invoke(train_args(out, "--lr", "1e30", "--epochs", "1", "--batch-size", "64", "--device", "cpu"))
    assert result.exit_code == 2
    text = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "error:" in text and "training diverged at epoch 1" in text and "lower --lr" in text
    hide, show = "\x1b[?25l", "\x1b[?25h"
    assert hide in text  # the progress bar hid the cursor while training ...
    assert text.rfind(show) > text.rfind(hide)  # ... and gave it back when training failed
    assert not out.exists()


def test_debug_lets_the_exception_propagate(tmp_path: Path) -> None:
    args = ["--debug", *train_args(tmp_path / "t.pt", model="lenett5")]
    with pytest.raises(ArchcompressError, match="unknown model 'lenett5'"):
        invoke(args, catch_exceptions=False)
    result = invoke(args)
    assert result.exit_code == 1
    assert isinstance(result.exception, ArchcompressError)
    assert result.exc_info is not None and result.exc_info[2] is not None  # a traceback to show
    assert "error:" not in result.stderr
    # --debug does not stick: the next run without it gets the one-line error again.
    assert_one_line_error(invoke(args[1:]), "unknown model 'lenett5'")


# --- the installed console script ---------------------------------------------------------------------------

SCRIPT = Path(sys.executable).with_name("archcompress")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"console script not installed next to {sys.executable}: pip install -e ."
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)


def test_console_script_version() -> None:
    done = run_script("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"archcompress {__version__}\n"


def test_console_script_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    done = run_script("train-teacher", "--model", "vgg111", "--dataset", "digits", "--out", str(out))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: unknown model 'vgg111': did you mean 'vgg11'")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not out.exists()
