"""Fixtures shared across the test suite (keep this small: module-specific helpers live beside their tests)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import torch

from archcompress.data import DataSplits, load_dataset

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
