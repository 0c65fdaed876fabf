"""Data set registry: one place that knows every data set name, and the one function that loads splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archcompress.data.base import DatasetInfo, DataSplits, TensorSplit, stratified_holdout
from archcompress.errors import ArchcompressError, unknown_name_error

IMAGEFOLDER_PREFIX = "imagefolder:"
# Offline sets without an official test split hold out this fraction of each class, always with seed 0,
# so that the test set never changes between runs.
OFFLINE_TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0


@dataclass(frozen=True)
class DataOptions:
    """How to load a data set. ``val_fraction`` of the training set is held out (per class) as ``val``."""

    data_root: Path | None = None
    download: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int = 224  # imagefolder only: images are resized and centre-cropped to this size
    workers: int = 0  # decoding processes, for data sets that are decoded from files


# The options that decide which samples land in which split and at what size: recorded with a teacher, so that a
# compression of it sees the same splits (its val and test images were never trained on) and input size.
SPLIT_OPTIONS = ("val_fraction", "split_seed", "image_size")


def split_options(options: DataOptions) -> dict[str, Any]:
    """The split-deciding options of ``options``, as plain values (what a teacher checkpoint records)."""
    return {name: getattr(options, name) for name in SPLIT_OPTIONS}


def with_recorded_splits(options: DataOptions, recorded: dict[str, Any] | None) -> DataOptions:
    """``options`` with each split option that is still at its default taken from ``recorded`` (a teacher's)."""
    defaults = DataOptions()
    chosen = {
        name: type(getattr(defaults, name))(value)
        for name, value in (recorded or {}).items()
        if name in SPLIT_OPTIONS and getattr(options, name) == getattr(defaults, name)
    }
    return replace(options, **chosen)


@dataclass(frozen=True)
class LoadedArrays:
    """What a source loader returns before splitting: the official train part and (if any) test part."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    scale: float  # multiply raw values by this to get [0, 1] (or the natural scale of the signal)


@dataclass(frozen=True)
class DatasetSource:
    """A registered data set: a loader and a one-line description."""

    name: str
    description: str
    needs_root: bool
    load: Callable[[DataOptions], LoadedArrays | DataSplits]


_SOURCES: dict[str, DatasetSource] = {}


def register_dataset(
    name: str, description: str, needs_root: bool
) -> Callable[[Callable[[DataOptions], LoadedArrays | DataSplits]], Callable[[DataOptions], LoadedArrays | DataSplits]]:
    """Register a loader under ``name``."""

    def decorate(
        load: Callable[[DataOptions], LoadedArrays | DataSplits],
    ) -> Callable[[DataOptions], LoadedArrays | DataSplits]:
        _SOURCES[name] = DatasetSource(name, description, needs_root, load)
        return load

    return decorate


def dataset_sources() -> list[DatasetSource]:
    """All registered data sets (plus the ``imagefolder:PATH`` form), sorted by name."""
    return [_SOURCES[name] for name in sorted(_SOURCES)]


def load_dataset(name: str, options: DataOptions | None = None) -> DataSplits:
    """Load ``(train, val, test)`` splits of a data set by name.

    ``val`` is a fixed, stratified ``options.val_fraction`` of the official training set (seed
    ``options.split_seed``); ``test`` is the official test set, or for sets without one a fixed stratified
    20% of all samples (seed 0). Searches score on ``val``; ``test`` is for the final report only.
    """
    options = options or DataOptions()
    if not 0.0 < options.val_fraction < 1.0:
        raise ArchcompressError(f"--val-fraction must be between 0 and 1, got {options.val_fraction}")
    if name.startswith(IMAGEFOLDER_PREFIX):
        from archcompress.data.imagefolder import load_imagefolder

        return load_imagefolder(Path(name[len(IMAGEFOLDER_PREFIX) :]).expanduser(), options)
    if name not in _SOURCES:
        raise unknown_name_error(
            "data set",
            name,
            _SOURCES,
            hint="run `archcompress datasets` to list them, or use imagefolder:PATH",
        )
    source = _SOURCES[name]
    if source.needs_root and options.data_root is None:
        raise ArchcompressError(
            f"data set {name!r} is read from disk: pass --data-root DIR (add --download to fetch it there)"
        )
    loaded = source.load(options)
    return loaded if isinstance(loaded, DataSplits) else split_arrays(loaded, options)


def split_arrays(loaded: LoadedArrays, options: DataOptions) -> DataSplits:
    """Apply the documented split rule to a loaded data set."""
    info = loaded.info
    train_x, train_y = loaded.train_x, loaded.train_y
    if loaded.test_x is None or loaded.test_y is None:
        kept, held = stratified_holdout(train_y.numpy(), OFFLINE_TEST_FRACTION, TEST_SPLIT_SEED)
        test = TensorSplit(info, train_x[held], train_y[held], loaded.scale)
        train_x, train_y = train_x[kept], train_y[kept]
    else:
        test = TensorSplit(info, loaded.test_x, loaded.test_y, loaded.scale)
    kept, held = stratified_holdout(train_y.numpy(), options.val_fraction, options.split_seed)
    return DataSplits(
        info=info,
        train=TensorSplit(info, train_x[kept], train_y[kept], loaded.scale),
        val=TensorSplit(info, train_x[held], train_y[held], loaded.scale),
        test=test,
    )


def channel_stats(x: torch.Tensor, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x * scale`` over samples and positions."""
    values = x.float().mul(scale).transpose(0, 1).reshape(x.shape[1], -1).double()  # (C, N * positions)
    return tuple(values.mean(1).tolist()), tuple(values.std(1).tolist())


def as_tensor(array: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Convert a NumPy array (or tensor) to a contiguous tensor of ``dtype``."""
    return torch.as_tensor(np.ascontiguousarray(array)).to(dtype)
