"""Shared helpers for the data-module tests: cached loads of the offline sets and the split rule, re-derived."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import torch

from archcompress.data import DataOptions, DataSplits, load_dataset


@cache
def _cached_load(name: str, options: DataOptions) -> DataSplits:
    return load_dataset(name, options)


@pytest.fixture(scope="session")
def load_offline() -> Callable[..., DataSplits]:
    """``load_offline(name, **options)``: load an offline data set once per distinct options (they are frozen)."""

    def load(name: str, **options: object) -> DataSplits:
        return _cached_load(name, DataOptions(**options))  # type: ignore[arg-type]

    return load


def rule_count(fraction: float, count: int) -> int:
    """The documented per-class hold-out size: Python's ``round(fraction * n_c)``."""
    return round(fraction * count)


@pytest.fixture(scope="session")
def expected_split_sizes() -> Callable[..., tuple[int, int, int]]:
    """Expected (train, val, test) sizes derived from the documented rule, independently of the loader.

    Without an official test set, 20% of each class (rounded) is held out as test first; then
    ``val_fraction`` of each remaining class (rounded) is held out as val.
    """

    def sizes(
        train_labels: np.ndarray, test_labels: np.ndarray | None = None, val_fraction: float = 0.1
    ) -> tuple[int, int, int]:
        counts = Counter(np.asarray(train_labels).tolist())
        if test_labels is None:
            test = sum(rule_count(0.2, n) for n in counts.values())
            counts = Counter({c: n - rule_count(0.2, n) for c, n in counts.items()})
        else:
            test = len(test_labels)
        val = sum(rule_count(val_fraction, n) for n in counts.values())
        return sum(counts.values()) - val, val, test

    return sizes


def sample_keys(raw: torch.Tensor, labels: torch.Tensor) -> Counter[tuple[bytes, int]]:
    """A multiset of (sample bytes, label): two splits partition a set iff their multisets add up to it."""
    flat = raw.reshape(len(raw), -1).contiguous().numpy()
    return Counter((row.tobytes(), int(y)) for row, y in zip(flat, labels.tolist(), strict=True))


@pytest.fixture(scope="session")
def keys_of() -> Callable[[torch.Tensor, torch.Tensor], Counter[tuple[bytes, int]]]:
    return sample_keys


def normalised(raw: torch.Tensor, scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """What a batch should hold without augmentation: ``(raw * scale - mean) / std`` per channel."""
    view = (-1,) + (1,) * (raw.dim() - 2)
    x = raw.float() * scale if scale != 1.0 else raw.float()
    return (x - torch.tensor(mean).view(view)) / torch.tensor(std).view(view)


@pytest.fixture(scope="session")
def normalise() -> Callable[..., torch.Tensor]:
    return normalised
