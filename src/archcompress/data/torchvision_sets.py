"""torchvision data sets read from ``--data-root`` (downloaded only with ``--download``), held in memory."""

from __future__ import annotations

from collections.abc import Callable
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


@register_dataset("mnist", "MNIST: 60,000 + 10,000 grey 1x28x28 digits (torchvision, --data-root)", True)
def load_mnist(options: DataOptions) -> LoadedArrays:
    from torchvision.datasets import MNIST

    train, test = _open("MNIST", "MNIST/raw/*-ubyte", options, lambda r, t, d: MNIST(r, train=t, download=d))
    info = DatasetInfo("mnist", (1, 28, 28), 10, *MNIST_STATS, Augmentation(shift=2))
    return _loaded(info, train, test, "targets", channels_last=False)


@register_dataset("fashion-mnist", "Fashion-MNIST: 60,000 + 10,000 grey 1x28x28 clothes (torchvision)", True)
def load_fashion_mnist(options: DataOptions) -> LoadedArrays:
    from torchvision.datasets import FashionMNIST

    train, test = _open(
        "Fashion-MNIST",
        "FashionMNIST/raw/*-ubyte",
        options,
        lambda r, t, d: FashionMNIST(r, train=t, download=d),
    )
    info = DatasetInfo("fashion-mnist", (1, 28, 28), 10, *FASHION_STATS, Augmentation(shift=2, hflip=True))
    return _loaded(info, train, test, "targets", channels_last=False)


@register_dataset("cifar10", "CIFAR-10: 50,000 + 10,000 colour 3x32x32 images, 10 classes (torchvision)", True)
def load_cifar10(options: DataOptions) -> LoadedArrays:
    from torchvision.datasets import CIFAR10

    train, test = _open("CIFAR-10", "cifar-10-batches-py/", options, lambda r, t, d: CIFAR10(r, train=t, download=d))
    info = DatasetInfo("cifar10", (3, 32, 32), 10, *CIFAR10_STATS, Augmentation(shift=4, hflip=True))
    return _loaded(info, train, test, "targets", channels_last=True)


@register_dataset("cifar100", "CIFAR-100: 50,000 + 10,000 colour 3x32x32 images, 100 classes (torchvision)", True)
def load_cifar100(options: DataOptions) -> LoadedArrays:
    from torchvision.datasets import CIFAR100

    train, test = _open("CIFAR-100", "cifar-100-python/", options, lambda r, t, d: CIFAR100(r, train=t, download=d))
    info = DatasetInfo("cifar100", (3, 32, 32), 100, *CIFAR100_STATS, Augmentation(shift=4, hflip=True))
    return _loaded(info, train, test, "targets", channels_last=True)


@register_dataset("svhn", "SVHN: 73,257 + 26,032 colour 3x32x32 house numbers, 10 classes (torchvision)", True)
def load_svhn(options: DataOptions) -> LoadedArrays:
    from torchvision.datasets import SVHN

    train, test = _open(
        "SVHN",
        "train_32x32.mat and test_32x32.mat",
        options,
        lambda r, t, d: SVHN(r, split="train" if t else "test", download=d),
    )
    # No flips: digits are not mirror-symmetric.
    info = DatasetInfo("svhn", (3, 32, 32), 10, *SVHN_STATS, Augmentation(shift=4))
    return _loaded(info, train, test, "labels", channels_last=False)
