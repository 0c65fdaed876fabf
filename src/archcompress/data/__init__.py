"""Data sets: one registry, one loader of ``(train, val, test)`` splits with a fixed, documented split rule."""

from archcompress.data import offline, torchvision_sets  # noqa: F401  (registers the data sets)
from archcompress.data.base import (
    Augmentation,
    Batch,
    DatasetInfo,
    DataSplits,
    Split,
    TensorSplit,
    augment_batch,
    stratified_holdout,
)
from archcompress.data.registry import (
    IMAGEFOLDER_PREFIX,
    DataOptions,
    DatasetSource,
    dataset_sources,
    load_dataset,
    register_dataset,
    split_options,
    with_recorded_splits,
)

__all__ = [
    "IMAGEFOLDER_PREFIX",
    "Augmentation",
    "Batch",
    "DataOptions",
    "DataSplits",
    "DatasetInfo",
    "DatasetSource",
    "Split",
    "TensorSplit",
    "augment_batch",
    "dataset_sources",
    "load_dataset",
    "register_dataset",
    "split_options",
    "stratified_holdout",
    "with_recorded_splits",
]
