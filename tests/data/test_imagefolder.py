"""imagefolder:PATH — layout rules, decoded shapes, the held-out test split, and the streaming path."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import archcompress.data.imagefolder as imagefolder
from archcompress.data import DataOptions, load_dataset
from archcompress.data.base import TensorSplit
from archcompress.data.imagefolder import IMAGENET_STATS, StreamingSplit
from archcompress.errors import ArchcompressError


def _write_images(folder: Path, classes: dict[str, int], seed: int, size: tuple[int, int] = (14, 10)) -> None:
    """``classes`` maps a class name to its image count; images are random RGB PNGs of ``size`` (w, h)."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / name / f"{i:03d}.png")


TRAIN_CLASSES = {"cat": 10, "dog": 10, "eel": 5}


def test_train_and_test_folders(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", TRAIN_CLASSES, seed=0)
    _write_images(tmp_path / "test", {"cat": 2, "dog": 3, "eel": 1}, seed=1)
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8))
    info = splits.info
    assert info.num_classes == 3
    assert info.input_shape == (3, 8, 8)
    assert (info.mean, info.std) == IMAGENET_STATS
    assert info.augmentation.shift == 1 and info.augmentation.hflip
    assert len(splits.test) == 6
    assert Counter(splits.test.labels().tolist()) == {0: 2, 1: 3, 2: 1}
    # val: round(0.1 * n_c) per class -> 1 + 1 + 0 (round(0.5) == 0).
    assert (len(splits.train), len(splits.val)) == (23, 2)
    assert Counter(splits.val.labels().tolist()) == {0: 1, 1: 1}
    for split in (splits.train, splits.val, splits.test):
        assert isinstance(split, TensorSplit)
        assert split.raw.shape == (len(split), 3, 8, 8)
        assert split.raw.dtype == torch.uint8
        batch = next(iter(split.batches(4)))
        assert batch.x.shape == (min(4, len(split)), 3, 8, 8)
        assert batch.x.dtype == torch.float32


def test_decoded_pixels_round_trip_at_the_stored_size(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 3, "b": 3}, seed=2, size=(12, 12))
    _write_images(tmp_path / "test", {"a": 1, "b": 1}, seed=3, size=(12, 12))
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=12))
    # At the stored size there is no resampling: the test split is the PNG pixels, (C, H, W), classes in order.
    for index, cls in enumerate(("a", "b")):
        pixels = np.array(Image.open(tmp_path / "test" / cls / "000.png"))
        assert torch.equal(splits.test.raw[index], torch.from_numpy(pixels).permute(2, 0, 1))
    assert splits.test.labels().tolist() == [0, 1]


def test_non_square_images_are_cropped_to_image_size(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 4, "b": 4}, seed=4, size=(30, 12))
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=6, val_fraction=0.25))
    assert splits.info.input_shape == (3, 6, 6)
    assert splits.train.raw.shape[1:] == (3, 6, 6)


def test_grey_images_become_three_channels(tmp_path: Path) -> None:
    for cls in ("x", "y"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((8, 8), 40 * i + 10, dtype=np.uint8), "L").save(
                tmp_path / "train" / cls / f"{i}.png"
            )
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8))
    raw = torch.cat([splits.train.raw, splits.val.raw, splits.test.raw])
    assert raw.shape == (10, 3, 8, 8)
    assert torch.equal(raw[:, 0], raw[:, 1]) and torch.equal(raw[:, 1], raw[:, 2])


def test_without_test_folder_a_stratified_fifth_is_held_out(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", TRAIN_CLASSES, seed=5)
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8))
    # test: round(0.2 * n_c) = 2, 2, 1; val from the rest (8, 8, 4): round(0.8) = 1, 1, round(0.4) = 0.
    assert Counter(splits.test.labels().tolist()) == {0: 2, 1: 2, 2: 1}
    assert Counter(splits.val.labels().tolist()) == {0: 1, 1: 1}
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 5)
    # Held-out test samples are distinct training images, and the same for another split seed.
    pool = torch.cat([splits.train.raw, splits.val.raw, splits.test.raw]).reshape(25, -1)
    assert len({row.numpy().tobytes() for row in pool}) == 25
    other = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8, split_seed=1))
    assert torch.equal(other.test.raw, splits.test.raw)


def test_val_folder_is_the_test_split_when_there_is_no_test_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", TRAIN_CLASSES, seed=6)
    _write_images(tmp_path / "val", {"cat": 1, "dog": 1, "eel": 2}, seed=7)
    splits = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8))
    assert splits.test.labels().tolist() == [0, 1, 2, 2]
    assert len(splits.train) + len(splits.val) == 25


def test_mismatching_class_folders(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"cat": 2, "dog": 2}, seed=8)
    _write_images(tmp_path / "test", {"cat": 1, "cow": 1}, seed=9)
    with pytest.raises(ArchcompressError, match="same class folders") as raised:
        load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8))
    assert "'cow'" in str(raised.value) and "'dog'" in str(raised.value)


def test_missing_train_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "test", {"cat": 1}, seed=10)
    with pytest.raises(ArchcompressError, match="no train/ sub-folder") as raised:
        load_dataset(f"imagefolder:{tmp_path}")
    assert f"{tmp_path}/train/<class>" in str(raised.value)


def test_train_folder_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "train" / "loose.png")
    with pytest.raises(ArchcompressError, match=r"not in ImageFolder layout.*one sub-folder per class"):
        load_dataset(f"imagefolder:{tmp_path}")


@pytest.mark.parametrize("with_test", [True, False])
def test_streaming_path_matches_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_test: bool) -> None:
    _write_images(tmp_path / "train", TRAIN_CLASSES, seed=11)
    if with_test:
        _write_images(tmp_path / "test", {"cat": 2, "dog": 2, "eel": 2}, seed=12)
    options = DataOptions(image_size=8)
    memory = load_dataset(f"imagefolder:{tmp_path}", options)
    monkeypatch.setattr(imagefolder, "MEMORY_LIMIT_BYTES", 0)
    stream = load_dataset(f"imagefolder:{tmp_path}", options)
    assert stream.info == memory.info
    for name in ("train", "val", "test"):
        streamed, held = getattr(stream, name), getattr(memory, name)
        assert isinstance(streamed, StreamingSplit)
        assert len(streamed) == len(held)
        assert torch.equal(streamed.labels(), held.labels())
        batches = list(streamed.batches(4))
        assert [len(b.y) for b in batches] == [len(b.y) for b in held.batches(4)]
        assert torch.equal(torch.cat([b.sample_index for b in batches]), torch.arange(len(held)))
        assert torch.equal(torch.cat([b.y for b in batches]), held.labels())
        x = torch.cat([b.x for b in batches])
        assert x.shape == (len(held), 3, 8, 8)
        assert torch.allclose(x, torch.cat([b.x for b in held.batches(4)]), atol=1e-5)


def test_streaming_shuffle_is_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_images(tmp_path / "train", TRAIN_CLASSES, seed=13)
    monkeypatch.setattr(imagefolder, "MEMORY_LIMIT_BYTES", 0)
    train = load_dataset(f"imagefolder:{tmp_path}", DataOptions(image_size=8)).train
    order = lambda seed: torch.cat([b.sample_index for b in train.batches(5, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    assert sorted(order(1).tolist()) == list(range(len(train)))
    augmented = next(iter(train.batches(5, augment=True, drop_last=True)))
    assert augmented.x.shape == (5, 3, 8, 8)
