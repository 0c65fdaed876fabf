"""Fixtures shared across the test suite (keep this small: module-specific helpers live beside their tests)."""

from __future__ import annotations

import pytest
import torch

from archcompress.data import DataSplits, load_dataset


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    """The offline sklearn digits splits, loaded once per session (1,293 / 144 / 360 samples of 1x8x8)."""
    return load_dataset("digits")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch report no CUDA device, so CUDA error paths behave the same on GPU machines."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
