"""Fixtures shared across the test suite (keep this small: module-specific helpers live beside their tests)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from archcompress.api import train_teacher
from archcompress.data import DataSplits, load_dataset
from archcompress.distill import TrainConfig
from archcompress.runtime import torch_threads

# pytest-xdist workers inherit COLUMNS=80; the CLI's consoles, created at import, would keep that width and wrap
# what the tests read. Tests that need a width set it per invocation.
os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    """The offline sklearn digits splits, loaded once per session (1,293 / 144 / 360 samples of 1x8x8)."""
    return load_dataset("digits")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch report no CUDA device, so CUDA error paths behave the same on GPU machines."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(autouse=True)
def library_log_handlers_are_left_as_found() -> Iterator[None]:
    """A handler left on the library's logger (e.g. on a test's closed stdout) breaks whatever test runs next."""
    logger = logging.getLogger("archcompress")
    before = list(logger.handlers)
    yield
    assert logger.handlers == before, f"the test left log handlers behind: {logger.handlers}"


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG-11 at 1/8 width trained 3 epochs on digits (a few seconds on one core), trained once per test
    process and shared by every test that compresses or evaluates; tests must not change the file."""
    path = tmp_path_factory.mktemp("tiny-teacher") / "teacher.pt"
    with torch_threads(1):
        train = TrainConfig(epochs=3, augment=False)
        train_teacher("vgg11", "digits", path, model_kwargs={"width": 0.125}, train=train, device="cpu")
    return path


def mark_unfinished(run: Path) -> Path:
    """Make a finished run directory look interrupted (a partial report), so that --resume replays it."""
    path = run / "report.json"
    report = json.loads(path.read_text())
    report["complete"] = False
    path.write_text(json.dumps(report))
    return run


@pytest.fixture
def unfinished() -> Callable[[Path], Path]:
    """:func:`mark_unfinished`, for tests that resume a run (a finished one is left untouched by --resume)."""
    return mark_unfinished
