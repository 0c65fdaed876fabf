"""torchvision data sets read from ``--data-root`` (downloaded only with ``--download``), held in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archcompress.data.base import Augmentation, DatasetInfo
from archcompress.data.registry import DataOptions, LoadedArrays, as_tensor, register_dataset
from archcompress.errors import ArchcompressError, first_line

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))


def _open(name: str, layout: str, options: DataOptions, make: Callable[[str, bool, bool], Any]) -> tuple[Any, Any]:
    """Open the train and test parts with torchvision, turning its errors into one-line messages."""
    assert options.data_root is not None
    root = Path(options.data_root).expanduser()
    if not root.is_dir() and not options.download:
        raise ArchcompressError(
            f"--data-root {root} does not exist: point it at the folder that holds {layout} "
            "(or add --download to fetch the data set there)"
        )
    try:
        return make(str(root), True, options.download), make(str(root), False, options.download)
    # torchvision's IDX reader rejects malformed files with bare asserts and TypeError, so catch those too.
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, AssertionError, TypeError) as exc:
        action = "the download failed" if options.download else "add --download to fetch it"
        raise ArchcompressError(
            f"{name} not found or corrupted under --data-root {root} (expected {layout}; "
            f"torchvision said: {first_line(exc)}): "
            f"fix the path or {action}"
        ) from exc


def _images(data: Any, channels_last: bool) -> torch.Tensor:
    """torchvision's uint8 image array -> (N, C, H, W) uint8 tensor."""
    x = as_tensor(np.asarray(data), torch.uint8)
    if x.dim() == 3:  # (N, H, W) grey
        return x.unsqueeze(1)
    return x.permute(0, 3, 1, 2).contiguous() if channels_last else x


def _loaded(info: DatasetInfo, train: Any, test: Any, labels: str, channels_last: bool) -> LoadedArrays:
    return LoadedArrays(
        info,
        _images(train.data, channels_last),
        as_tensor(np.asarray(getattr(train, labels)), torch.long),
        _images(test.data, channels_last),
        as_tensor(np.asarray(getattr(test, labels)), torch.long),
        1.0 / 255.0,
    )


@dataclass(frozen=True)
class TorchvisionSet:
    """One torchvision data set: where its files are, how to open it, its shape, statistics and augmentation."""

    name: str
    description: str
    title: str  # for messages
    layout: str  # the files expected under --data-root
    dataset_class: str  # in torchvision.datasets
    shape: tuple[int, ...]
    classes: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]
    augmentation: Augmentation
    labels: str = "targets"  # the attribute holding the labels
    channels_last: bool = False  # the images are stored (N, H, W, C)
    split_argument: bool = False  # opened with split="train"/"test" instead of train=True/False

    def load(self, options: DataOptions) -> LoadedArrays:
        """Open both parts under ``options.data_root`` and hold them in memory."""
        import torchvision.datasets

        make = getattr(torchvision.datasets, self.dataset_class)

        def open_part(root: str, train: bool, download: bool) -> Any:
            if self.split_argument:
                return make(root, split="train" if train else "test", download=download)
            return make(root, train=train, download=download)

        train, test = _open(self.title, self.layout, options, open_part)
        info = DatasetInfo(self.name, self.shape, self.classes, *self.stats, self.augmentation)
        return _loaded(info, train, test, self.labels, self.channels_last)


TORCHVISION_SETS = (
    TorchvisionSet("mnist", "MNIST: 60,000 + 10,000 grey 1x28x28 digits (torchvision, --data-root)", "MNIST",
                   "MNIST/raw/*-ubyte", "MNIST", (1, 28, 28), 10, MNIST_STATS, Augmentation(shift=2)),
    TorchvisionSet("fashion-mnist", "Fashion-MNIST: 60,000 + 10,000 grey 1x28x28 clothes (torchvision)",
                   "Fashion-MNIST", "FashionMNIST/raw/*-ubyte", "FashionMNIST", (1, 28, 28), 10, FASHION_STATS,
                   Augmentation(shift=2, hflip=True)),
    TorchvisionSet("cifar10", "CIFAR-10: 50,000 + 10,000 colour 3x32x32 images, 10 classes (torchvision)", "CIFAR-10",
                   "cifar-10-batches-py/", "CIFAR10", (3, 32, 32), 10, CIFAR10_STATS,
                   Augmentation(shift=4, hflip=True), channels_last=True),
    TorchvisionSet("cifar100", "CIFAR-100: 50,000 + 10,000 colour 3x32x32 images, 100 classes (torchvision)",
                   "CIFAR-100", "cifar-100-python/", "CIFAR100", (3, 32, 32), 100, CIFAR100_STATS,
                   Augmentation(shift=4, hflip=True), channels_last=True),
    # No flips for SVHN: digits are not mirror-symmetric.
    TorchvisionSet("svhn", "SVHN: 73,257 + 26,032 colour 3x32x32 house numbers, 10 classes (torchvision)", "SVHN",
                   "train_32x32.mat and test_32x32.mat", "SVHN", (3, 32, 32), 10, SVHN_STATS, Augmentation(shift=4),
                   labels="labels", split_argument=True),
)  # fmt: skip

for _set in TORCHVISION_SETS:
    register_dataset(_set.name, _set.description, True)(_set.load)
