"""Every user mistake is an ArchcompressError whose message names the problem and the fix."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import archcompress.data.registry as registry
from archcompress.data import (
    DataOptions,
    DatasetInfo,
    DataSplits,
    TensorSplit,
    dataset_sources,
    load_dataset,
    register_dataset,
)
from archcompress.data.registry import LoadedArrays
from archcompress.errors import ArchcompressError

TORCHVISION_SETS = ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ArchcompressError) as raised:
        load_dataset("mnsit5k")
    message = str(raised.value)
    assert "unknown data set 'mnsit5k'" in message
    assert "did you mean 'mnist5k'" in message
    assert "archcompress datasets" in message and "imagefolder:PATH" in message


def test_unknown_name_without_a_close_match() -> None:
    with pytest.raises(ArchcompressError, match="unknown data set 'zzzzqqq'") as raised:
        load_dataset("zzzzqqq")
    assert "did you mean" not in str(raised.value)


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_torchvision_set_without_data_root(name: str) -> None:
    with pytest.raises(ArchcompressError, match="--data-root DIR") as raised:
        load_dataset(name)
    assert repr(name) in str(raised.value) and "--download" in str(raised.value)


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_data_root_that_does_not_exist(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ArchcompressError, match="does not exist") as raised:
        load_dataset(name, DataOptions(data_root=missing))
    assert str(missing) in str(raised.value) and "--download" in str(raised.value)
    assert not missing.exists()  # nothing is created, nothing is downloaded


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("mnist", "MNIST/raw/*-ubyte"),
        ("fashion-mnist", "FashionMNIST/raw/*-ubyte"),
        ("cifar10", "cifar-10-batches-py/"),
        ("cifar100", "cifar-100-python/"),
        ("svhn", "train_32x32.mat and test_32x32.mat"),
    ],
)
def test_empty_data_root(tmp_path: Path, name: str, layout: str) -> None:
    with pytest.raises(ArchcompressError, match="not found or corrupted") as raised:
        load_dataset(name, DataOptions(data_root=tmp_path))
    message = str(raised.value)
    assert f"expected {layout}" in message and "add --download" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []  # no download was attempted


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not an IDX file", id="bad-magic"),  # torchvision: bare AssertionError
        pytest.param(b"", id="empty"),  # ValueError
        pytest.param(b"\x00\x00\x0c\x03" + struct.pack(">3I", 1, 1, 1) + b"\x00" * 4, id="int32-idx"),  # TypeError
        pytest.param(b"\x00\x00\x08\x03" + struct.pack(">3I", 9, 28, 28) + b"\x00" * 5, id="truncated"),
    ],
)
def test_garbage_in_place_of_the_idx_files(tmp_path: Path, content: bytes) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file_name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / file_name).write_bytes(content)
    with pytest.raises(ArchcompressError, match="MNIST not found or corrupted") as raised:
        load_dataset("mnist", DataOptions(data_root=tmp_path))
    assert "add --download" in str(raised.value) and "torchvision said" in str(raised.value)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_val_fraction_out_of_range(fraction: float) -> None:
    with pytest.raises(ArchcompressError, match=re.escape(f"--val-fraction must be between 0 and 1, got {fraction}")):
        load_dataset("digits", DataOptions(val_fraction=fraction))


def test_val_fraction_is_checked_before_anything_is_read() -> None:
    with pytest.raises(ArchcompressError, match="--val-fraction"):
        load_dataset("imagefolder:/definitely/not/here", DataOptions(val_fraction=1.0))


def test_missing_imagefolder_path() -> None:
    with pytest.raises(ArchcompressError, match="no train/ sub-folder"):
        load_dataset("imagefolder:/definitely/not/here")


def test_register_dataset_applies_the_split_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    info = DatasetInfo("toy", (1, 3), 2, (0.0,), (1.0,))
    labels = torch.arange(40) % 2

    @register_dataset("toy", "a toy set", needs_root=False)
    def load_toy(options: DataOptions) -> LoadedArrays:
        x = torch.arange(120, dtype=torch.float32).view(40, 1, 3)
        return LoadedArrays(info, x, labels, None, None, 1.0)

    assert "toy" in [s.name for s in dataset_sources()]
    splits = load_dataset("toy", DataOptions(val_fraction=0.25))
    # 20 per class: 4 test, then round(0.25 * 16) = 4 val, 12 train, per class.
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 8, 8)
    assert np.bincount(splits.val.labels().numpy()).tolist() == [4, 4]


def test_register_dataset_passes_ready_splits_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    info = DatasetInfo("ready", (1, 2), 2, (0.0,), (1.0,))
    part = TensorSplit(info, torch.zeros(3, 1, 2), torch.tensor([0, 1, 0]), 1.0)
    ready = DataSplits(info, part, part, part)
    register_dataset("ready", "ready splits", needs_root=True)(lambda options: ready)
    with pytest.raises(ArchcompressError, match="--data-root"):
        load_dataset("ready")
    assert load_dataset("ready", DataOptions(data_root=Path("."))) is ready
