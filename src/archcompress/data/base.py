"""Data set description, splits held as tensors, and a fast batch iterator with train-only augmentation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Train-only augmentation applied to whole batches: random shift (zero padding) and horizontal flip."""

    shift: int = 0  # pixels (or samples, for 1-D signals) of random translation
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        return self.shift > 0 or self.hflip


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: its shape, classes, normalisation and augmentation."""

    name: str
    input_shape: tuple[int, ...]  # (C, H, W) for images, (C, L) for signals
    num_classes: int
    mean: tuple[float, ...]  # per channel, after scaling to [0, 1]
    std: tuple[float, ...]
    augmentation: Augmentation = Augmentation()


class Batch(NamedTuple):
    """A batch: normalised inputs, labels, and the indices of the samples within their split."""

    x: torch.Tensor  # (B, *input_shape) float32
    y: torch.Tensor  # (B,) int64
    sample_index: torch.Tensor  # (B,) int64, position of each sample within its split


class Split(Protocol):
    """One split (train, val or test) of a data set."""

    info: DatasetInfo

    def __len__(self) -> int: ...

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
        """Yield batches; ``augment`` only has an effect on training data and is off by default."""
        ...

    def labels(self) -> torch.Tensor:
        """All labels of the split, in index order."""
        ...


class TensorSplit:
    """A split held in memory as one tensor: nothing is decoded per epoch.

    ``raw`` keeps the compact stored form (uint8 images, or float signals); batches are scaled,
    augmented and normalised on the fly, which costs microseconds and keeps CIFAR-sized sets at 1 byte
    per value.
    """

    def __init__(self, info: DatasetInfo, raw: torch.Tensor, targets: torch.Tensor, scale: float) -> None:
        if raw.shape[1:] != info.input_shape:
            raise ValueError(f"{info.name}: samples have shape {tuple(raw.shape[1:])}, expected {info.input_shape}")
        if len(raw) != len(targets):
            raise ValueError(f"{info.name}: {len(raw)} samples but {len(targets)} labels")
        self.info = info
        self.raw = raw
        self.targets = targets.long()
        self.scale = scale
        view = (-1,) + (1,) * (len(info.input_shape) - 1)  # (C, 1, 1) or (C, 1)
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(view)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(view)

    def __len__(self) -> int:
        return len(self.targets)

    def labels(self) -> torch.Tensor:
        return self.targets

    def subset(self, indices: np.ndarray | torch.Tensor) -> TensorSplit:
        """A split made of the given sample indices (re-indexed from 0)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return TensorSplit(self.info, self.raw[index], self.targets[index], self.scale)

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
        generator = torch.Generator().manual_seed(seed)
        count = len(self)
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        stop = count - count % batch_size if drop_last else count
        augmentation = self.info.augmentation if augment else Augmentation()
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            x = self.raw[index].float()
            if self.scale != 1.0:
                x = x * self.scale
            if augmentation.enabled:
                x = augment_batch(x, augmentation, generator)
            x = (x - self._mean) / self._std
            yield Batch(
                x.to(device, non_blocking=True),
                self.targets[index].to(device, non_blocking=True),
                index,
            )


def augment_batch(x: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Randomly shift each sample by up to ``shift`` (zero fill) and flip it horizontally with p=0.5.

    Works for images (B, C, H, W) and signals (B, C, L); the last dimension is the horizontal one.
    """
    batch = x.shape[0]
    spatial = x.shape[2:]
    if augmentation.shift > 0:
        pad = augmentation.shift
        padded = F.pad(x, (pad, pad) * len(spatial))  # zero padding in [0, 1] space = black / silence
        offsets = [torch.randint(0, 2 * pad + 1, (batch,), generator=generator) for _ in spatial]
        batch_index = torch.arange(batch)
        channels = torch.arange(x.shape[1])
        # Advanced indexing with index tensors broadcast to the output's (B, C, ...) shape: the result has the
        # standard (row-major) strides, so a user's forward may call x.view(x.size(0), -1) on it. A permuted
        # result would not: with one channel, .contiguous() keeps its channels_last strides, and a conv's output
        # follows them.
        if len(spatial) == 2:
            rows = offsets[0][:, None] + torch.arange(spatial[0])  # (B, H)
            cols = offsets[1][:, None] + torch.arange(spatial[1])  # (B, W)
            x = padded[
                batch_index[:, None, None, None],
                channels[None, :, None, None],
                rows[:, None, :, None],
                cols[:, None, None, :],
            ]  # (B, C, H, W)
        else:
            cols = offsets[0][:, None] + torch.arange(spatial[0])  # (B, L)
            x = padded[batch_index[:, None, None], channels[None, :, None], cols[:, None, :]]  # (B, C, L)
    if augmentation.hflip:
        flip = torch.rand(batch, generator=generator) < 0.5
        x = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
    return x.contiguous()


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (kept, held out) with ``fraction`` of every class held out.

    The rule: for each class c, its indices are shuffled with ``numpy.random.default_rng(seed + c)`` and
    the first ``round(fraction * n_c)`` are held out. Both outputs are sorted, so the result depends only
    on the labels, the fraction and the seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng(seed + int(cls))
        held.append(rng.permutation(members)[: round(fraction * len(members))])
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


@dataclass(frozen=True)
class DataSplits:
    """The three splits of a data set: ``val`` for search scoring, ``test`` only for the final report."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
