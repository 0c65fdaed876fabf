"""Fixtures for the reliability tests: one tiny trained teacher and one cache home per session, one torch thread."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archcompress.api import train_teacher
from archcompress.distill import TrainConfig
from archcompress.runtime import torch_threads


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$ARCHCOMPRESS_HOME`` for one module and the subprocesses it starts (teacher logits are cached there)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHCOMPRESS_HOME", str(path))
        yield path


@pytest.fixture(autouse=True)
def one_thread(home: Path) -> Iterator[None]:
    """One torch thread, so that in-process runs match subprocess runs (started with OMP_NUM_THREADS=1)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG-11 at 1/8 width trained on digits for 3 epochs (about 3 s on one core; ~89% test accuracy)."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = TrainConfig(epochs=3, augment=False)
        train_teacher("vgg11", "digits", path, model_kwargs={"width": 0.125}, train=train, device="cpu")
    finally:
        torch.set_num_threads(before)
    return path


@pytest.fixture(scope="module")
def subprocess_env(home: Path) -> dict[str, str]:
    """The environment for archcompress subprocesses: one thread, the shared cache home, wide output."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "ARCHCOMPRESS_HOME": str(home), "COLUMNS": "400"}
