"""Fixtures shared by the search tests."""

from __future__ import annotations

import pytest
import torch

from archcompress.models import create_model
from archcompress.space import CompressionSpace


@pytest.fixture(scope="module")
def space() -> CompressionSpace:
    """A VGG-11 at width 0.25 on 1x28x28 inputs (14 units, 11 removable), seeded weights."""
    torch.manual_seed(0)
    return CompressionSpace.from_model(create_model("vgg11", (1, 28, 28), 10, {"width": 0.25}).eval(), (1, 28, 28))
