"""torchvision data sets read from tiny files that the tests write in torchvision's on-disk format."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from archcompress.data import Augmentation, DataOptions, load_dataset, stratified_holdout

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (sn3 "Pascal Vincent") file: magic 0x0000 08 <ndim>, big-endian int32 dims, then the uint8 values."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def _write_mnist_like(root: Path, folder: str, n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for name, key in zip(MNIST_FILES, ("train_x", "train_y", "test_x", "test_y"), strict=True):
        _write_idx(raw / name, arrays[key])
    return arrays


def _exists_only(fpath: str | Path, md5: str | None = None) -> bool:
    return os.path.isfile(fpath)


@pytest.fixture
def no_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR and SVHN verify MD5 sums of the real files; for the tests' tiny files only check that they exist."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    monkeypatch.setattr(cifar, "check_integrity", _exists_only)
    monkeypatch.setattr(svhn, "check_integrity", _exists_only)


def _check_split_rule(splits, train_x: torch.Tensor, train_y: torch.Tensor, val_fraction: float, seed: int) -> None:
    """train/val are the official training samples at the documented hold-out indices, bytes and labels exact."""
    kept, held = stratified_holdout(train_y.numpy(), val_fraction, seed)
    counts = np.bincount(train_y.numpy())
    assert len(splits.val) == sum(round(val_fraction * n) for n in counts)
    assert len(splits.train) + len(splits.val) == len(train_y)
    assert torch.equal(splits.train.raw, train_x[kept])
    assert torch.equal(splits.train.labels(), train_y[kept])
    assert torch.equal(splits.val.raw, train_x[held])
    assert torch.equal(splits.val.labels(), train_y[held])


@pytest.mark.parametrize(
    ("name", "folder", "augmentation"),
    [("mnist", "MNIST", Augmentation(shift=2)), ("fashion-mnist", "FashionMNIST", Augmentation(shift=2, hflip=True))],
)
def test_mnist_like_round_trip(tmp_path: Path, name: str, folder: str, augmentation: Augmentation) -> None:
    arrays = _write_mnist_like(tmp_path, folder, n_train=60, n_test=12, seed=1)
    splits = load_dataset(name, DataOptions(data_root=tmp_path))
    info = splits.info
    assert (info.name, info.input_shape, info.num_classes, info.augmentation) == (name, (1, 28, 28), 10, augmentation)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, 12)
    assert splits.test.raw.dtype == torch.uint8
    assert torch.equal(splits.test.raw, torch.from_numpy(arrays["test_x"]).unsqueeze(1))
    assert torch.equal(splits.test.labels(), torch.from_numpy(arrays["test_y"]).long())
    train_x, train_y = torch.from_numpy(arrays["train_x"]).unsqueeze(1), torch.from_numpy(arrays["train_y"]).long()
    _check_split_rule(splits, train_x, train_y, 0.1, 0)
    batch = next(iter(splits.test.batches(5)))
    assert batch.x.shape == (5, 1, 28, 28)
    expected = (torch.from_numpy(arrays["test_x"][:5]).float() / 255.0 - info.mean[0]) / info.std[0]
    assert torch.allclose(batch.x[:, 0], expected, atol=1e-5)


def test_mnist_split_seed_and_val_fraction(tmp_path: Path) -> None:
    arrays = _write_mnist_like(tmp_path, "MNIST", n_train=60, n_test=12, seed=2)
    splits = load_dataset("mnist", DataOptions(data_root=tmp_path, val_fraction=0.5, split_seed=3))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 30, 12)
    train_x, train_y = torch.from_numpy(arrays["train_x"]).unsqueeze(1), torch.from_numpy(arrays["train_y"]).long()
    _check_split_rule(splits, train_x, train_y, 0.5, 3)


def _write_cifar(root: Path, hundred: bool, seed: int) -> dict[str, np.ndarray]:
    """CIFAR python layout: pickled dicts whose ``data`` rows are 1024 R, then 1024 G, then 1024 B values."""
    rng = _rng(seed)
    classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    per_file = 60 if hundred else 12  # 60 training images, 6 in each of 10 classes: 1 per class goes to val
    train_images, train_labels = [], []
    for index, file_name in enumerate(train_names):
        images = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)
        labels = [((index * per_file + i) % 10) * (classes // 10) for i in range(per_file)]  # spread over 0..99
        entry = {"data": images.reshape(per_file, 3072), label_key: labels}
        if hundred:
            entry["coarse_labels"] = [label // 5 for label in labels]
        (folder / file_name).write_bytes(pickle.dumps(entry))
        train_images.append(images)
        train_labels.extend(labels)
    test_images = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    test_labels = [3, 1, 4, 1, 5, 9, classes - 1]
    (folder / ("test" if hundred else "test_batch")).write_bytes(
        pickle.dumps({"data": test_images.reshape(7, 3072), label_key: test_labels})
    )
    meta_name, meta_key = ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    (folder / meta_name).write_bytes(pickle.dumps({meta_key: [f"class{i}" for i in range(classes)]}))
    return {
        "train_x": np.concatenate(train_images),
        "train_y": np.asarray(train_labels),
        "test_x": test_images,
        "test_y": np.asarray(test_labels),
    }


@pytest.mark.usefixtures("no_md5")
@pytest.mark.parametrize(("name", "hundred", "classes"), [("cifar10", False, 10), ("cifar100", True, 100)])
def test_cifar_round_trip(tmp_path: Path, name: str, hundred: bool, classes: int) -> None:
    arrays = _write_cifar(tmp_path, hundred, seed=3)
    splits = load_dataset(name, DataOptions(data_root=tmp_path))
    info = splits.info
    assert (info.input_shape, info.num_classes, info.augmentation) == ((3, 32, 32), classes, Augmentation(4, True))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, 7)
    # Channel-major storage must come back as (C, H, W) exactly: channel 0 is the first 1024 bytes of a row.
    assert splits.test.raw.shape == (7, 3, 32, 32)
    assert torch.equal(splits.test.raw, torch.from_numpy(arrays["test_x"]))
    assert torch.equal(
        splits.test.raw[2, 1].flatten(), torch.from_numpy(arrays["test_x"].reshape(7, 3072)[2, 1024:2048])
    )
    assert torch.equal(splits.test.labels(), torch.from_numpy(arrays["test_y"]).long())
    _check_split_rule(splits, torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long(), 0.1, 0)
    batch = next(iter(splits.test.batches(7)))
    assert batch.x.shape == (7, 3, 32, 32)
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    assert torch.allclose(batch.x, (torch.from_numpy(arrays["test_x"]).float() / 255.0 - mean) / std, atol=1e-5)


def _write_svhn(root: Path, seed: int) -> dict[str, np.ndarray]:
    """SVHN .mat files: X is (32, 32, 3, N) = (H, W, C, N) uint8, y is (N, 1) with label 10 meaning digit 0."""
    from scipy.io import savemat

    rng = _rng(seed)
    out = {}
    for split, count in (("train", 60), ("test", 9)):
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)
        digits = np.arange(count) % 10
        stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(count, 1)
        savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored})
        out[f"{split}_x"], out[f"{split}_y"] = images, digits
    return out


@pytest.mark.usefixtures("no_md5")
def test_svhn_round_trip(tmp_path: Path) -> None:
    arrays = _write_svhn(tmp_path, seed=4)
    splits = load_dataset("svhn", DataOptions(data_root=tmp_path))
    info = splits.info
    assert (info.input_shape, info.num_classes, info.augmentation) == ((3, 32, 32), 10, Augmentation(shift=4))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 10, 9)
    assert torch.equal(splits.test.raw, torch.from_numpy(arrays["test_x"]))
    # Label 10 on disk is digit 0.
    assert torch.equal(splits.test.labels(), torch.from_numpy(arrays["test_y"]).long())
    assert splits.test.labels().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    _check_split_rule(splits, torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"]).long(), 0.1, 0)
    assert splits.train.labels().max().item() == 9
