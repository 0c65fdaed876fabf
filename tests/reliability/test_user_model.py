"""A user's own model (``path/net.py:Factory``) through train-teacher: augmented batches it can ``view``, one-line
errors from its forward, and an early warning when `compress` will refuse it."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from archcompress.api import train_teacher
from archcompress.checkpoint import load_teacher
from archcompress.distill import TrainConfig
from cli_helpers import invoke

NET = """
import torch
from torch import nn


class ViewNet(nn.Module):
    # Flattens with x.view, as many tutorials do: this needs row-major (not channels_last) strides.
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, num_classes)

    def forward(self, x):
        x = self.conv(x).relu()
        x = x.view(x.size(0), -1)
        return self.fc(x)


class TrainOnlyBug(nn.Module):
    # Passes the dummy forward pass (eval mode) and fails on the first training step.
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        if self.training:
            raise ValueError("dropout rate must be in [0, 1]")
        return self.fc(x.flatten(1))


class Recurrent(nn.Module):
    # Trains fine, but the compression space has no handler for an LSTM.
    def __init__(self, num_classes):
        super().__init__()
        self.lstm = nn.LSTM(40, 8, batch_first=True)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):  # (B, 1, 40)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def Factory(num_classes):
    return ViewNet(num_classes)


def train_only_bug(num_classes):
    return TrainOnlyBug(num_classes)


def recurrent(num_classes):
    return Recurrent(num_classes)
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "net.py"
    path.write_text(textwrap.dedent(NET))
    return path


def test_a_model_that_views_augmented_mnist5k_batches_trains(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    args = ["train-teacher", "--model", f"{net}:Factory", "--dataset", "mnist5k", "--epochs", "1"]
    result = invoke([*args, "--batch-size", "256", "--device", "cpu", "--out", out])
    assert result.exit_code == 0, (result.output, result.exception)
    teacher = load_teacher(out)
    assert teacher.meta.model == f"{net}:Factory"
    assert teacher.meta.test_accuracy is not None and teacher.meta.test_accuracy > 0.5  # it learned


def test_an_exception_in_the_models_forward_during_training_is_one_line_with_exit_2(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    result = invoke(["train-teacher", "--model", f"{net}:train_only_bug", "--dataset", "digits", "--out", out])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "TrainOnlyBug.forward" in errors[0]
    assert "ValueError" in errors[0] and "dropout rate must be in [0, 1]" in errors[0]
    assert "epoch 1, step 1" in errors[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_training_a_model_the_space_refuses_warns_before_training(
    net: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained_when_warned: list[bool] = []

    class WarnedFirst:  # a callback: records whether the warning came before training started
        def on_train_start(self, total_steps: int, epochs: int) -> None:
            trained_when_warned.append(any("will refuse" in r.getMessage() for r in caplog.records))

        def on_step(self, step: int, loss: float, accuracy: float) -> None: ...
        def on_epoch_end(self, stats: object) -> None: ...
        def on_train_end(self) -> None: ...

    with caplog.at_level(logging.WARNING, logger="archcompress"):
        result = train_teacher(
            f"{net}:recurrent",
            "mnist1d",
            tmp_path / "lstm.pt",
            train=TrainConfig(epochs=1, max_steps=2),
            device="cpu",
            callbacks=(WarnedFirst(),),  # type: ignore[arg-type]
        )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "archcompress"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "`compress` will refuse this teacher" in message and "LSTM" in message and "recurrent" in message
    assert getattr(warnings[0], "console", False) is True  # the CLI's ConsoleWarnings shows it
    assert trained_when_warned == [True]
    assert result.path.is_file()  # training still went ahead


def test_a_compressible_model_trains_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="archcompress"):
        train_teacher("lenet5", "digits", tmp_path / "t.pt", train=TrainConfig(epochs=1, max_steps=1), device="cpu")
    assert not [r for r in caplog.records if r.name == "archcompress" and r.levelno >= logging.WARNING]


def test_the_cli_shows_the_refusal_warning_and_still_trains(net: Path, tmp_path: Path) -> None:
    out = tmp_path / "lstm.pt"
    args = ["train-teacher", "--model", f"{net}:recurrent", "--dataset", "mnist1d", "--epochs", "1", "--out", out]
    result = invoke(args)
    assert result.exit_code == 0, (result.output, result.exception)
    refusals = [line for line in result.stderr.splitlines() if "will refuse" in line]
    assert len(refusals) == 1 and refusals[0].startswith("warning: model") and "LSTM" in refusals[0]
    assert out.is_file()
