"""``imagefolder:PATH``: a folder of class sub-folders (torchvision ImageFolder layout).

Layout: ``PATH/train/<class>/*.jpg`` is required; ``PATH/test/`` (or else ``PATH/val/``) is the test split,
and without either a fixed stratified 20% of ``train`` is held out as test. Images are resized (shorter
side) and centre-cropped to ``--image-size``. Sets that fit in ``MEMORY_LIMIT_BYTES`` as uint8 are decoded
once and kept in memory; larger ones are streamed from disk with ``--workers`` decoding processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from archcompress.data.base import (
    Augmentation,
    Batch,
    DatasetInfo,
    DataSplits,
    TensorSplit,
    stratified_holdout,
)
from archcompress.data.registry import OFFLINE_TEST_FRACTION, TEST_SPLIT_SEED, DataOptions
from archcompress.errors import ArchcompressError, first_line

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MEMORY_LIMIT_BYTES = 4 * 1024**3


class _Indexed(Dataset[tuple[torch.Tensor, int, int]]):
    """Wrap a data set so that items carry their index (needed to look up cached teacher logits)."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.base[index]
        return x, y, index


class StreamingSplit:
    """A split decoded from disk on every pass, for image folders too large to keep in memory."""

    def __init__(self, info: DatasetInfo, folder: Any, indices: np.ndarray, image_size: int, workers: int) -> None:
        self.info = info
        self._folder = folder
        self._indices = indices
        self._image_size = image_size
        self._workers = workers

    def __len__(self) -> int:
        return len(self._indices)

    def labels(self) -> torch.Tensor:
        targets = np.asarray(self._folder.targets)
        return torch.as_tensor(targets[self._indices], dtype=torch.long)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        from torchvision import transforms as T

        size = self._image_size
        steps: list[Any] = (
            [T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if augment else [T.Resize(size), T.CenterCrop(size)]
        )
        transform = T.Compose([*steps, T.ToTensor(), T.Normalize(self.info.mean, self.info.std)])
        folder = type(self._folder)(self._folder.root, transform=transform)
        loader = DataLoader(
            _Indexed(Subset(folder, self._indices.tolist())),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self._workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=torch.device(device).type == "cuda",
        )
        for x, y, index in loader:
            yield Batch(x.to(device, non_blocking=True), y.to(device, non_blocking=True), index)


def _open_folder(path: Path) -> Any:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path))
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise ArchcompressError(
            f"image folder {path} is not in ImageFolder layout ({first_line(exc)}): "
            "expected one sub-folder per class holding image files"
        ) from exc


def _decode_all(folder: Any, image_size: int, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of a folder once into a (N, 3, S, S) uint8 tensor."""
    from torchvision import transforms as T

    folder.transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.PILToTensor()])
    loader = DataLoader(folder, batch_size=256, num_workers=workers)
    images, labels = [], []
    for x, y in loader:
        images.append(x[:, :3] if x.shape[1] >= 3 else x.expand(-1, 3, -1, -1))
        labels.append(y)
    return torch.cat(images), torch.cat(labels).long()


def load_imagefolder(path: Path, options: DataOptions) -> DataSplits:
    """Load ``imagefolder:PATH`` splits (see the module docstring for the layout and the split rule)."""
    if not (path / "train").is_dir():
        raise ArchcompressError(
            f"imagefolder:{path} has no train/ sub-folder: expected {path}/train/<class>/<image files> "
            "(and optionally test/ or val/)"
        )
    train_folder = _open_folder(path / "train")
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    test_folder = _open_folder(test_dir) if test_dir is not None else None
    if test_folder is not None and test_folder.classes != train_folder.classes:
        raise ArchcompressError(
            f"imagefolder:{path}: {test_dir} has classes {test_folder.classes} but train/ has "
            f"{train_folder.classes}: both must hold the same class folders"
        )
    size = options.image_size
    info = DatasetInfo(
        f"imagefolder:{path}", (3, size, size), len(train_folder.classes), *IMAGENET_STATS,
        Augmentation(shift=max(1, size // 8), hflip=True),
    )  # fmt: skip
    targets = np.asarray(train_folder.targets)
    all_train = np.arange(len(targets))
    if test_folder is None:
        all_train, test_index = stratified_holdout(targets, OFFLINE_TEST_FRACTION, TEST_SPLIT_SEED)
    kept, held = stratified_holdout(targets[all_train], options.val_fraction, options.split_seed)
    train_index, val_index = all_train[kept], all_train[held]

    total = len(targets) + (len(test_folder) if test_folder is not None else 0)
    if total * 3 * size * size <= MEMORY_LIMIT_BYTES:
        x, y = _decode_all(train_folder, size, options.workers)
        split = lambda idx: TensorSplit(info, x[idx], y[idx], 1.0 / 255.0)  # noqa: E731
        if test_folder is not None:
            test_x, test_y = _decode_all(test_folder, size, options.workers)
            test: Any = TensorSplit(info, test_x, test_y, 1.0 / 255.0)
        else:
            test = split(test_index)
        return DataSplits(info, split(train_index), split(val_index), test)
    stream = lambda folder, idx: StreamingSplit(info, folder, idx, size, options.workers)  # noqa: E731
    test_split = (
        stream(test_folder, np.arange(len(test_folder)))
        if test_folder is not None
        else stream(train_folder, test_index)
    )
    return DataSplits(info, stream(train_folder, train_index), stream(train_folder, val_index), test_split)
