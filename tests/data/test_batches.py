"""TensorSplit batches: shapes, dtypes, sample_index, shuffling, drop_last, and train-only augmentation."""

from __future__ import annotations

import pytest
import torch

from archcompress.data import Augmentation, Batch, DatasetInfo, TensorSplit, augment_batch


def _collect(split, batch_size: int, **kwargs) -> list[Batch]:
    return list(split.batches(batch_size, **kwargs))


def _image_split(augmentation: Augmentation, count: int = 64, size: int = 12, channels: int = 3) -> TensorSplit:
    generator = torch.Generator().manual_seed(3)
    raw = torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)
    info = DatasetInfo("synthetic", (channels, size, size), 4, (0.5,) * channels, (0.25,) * channels, augmentation)
    return TensorSplit(info, raw, torch.arange(count) % 4, 1.0 / 255.0)


def test_batch_shapes_dtypes_and_sample_index(load_offline, normalise) -> None:
    train = load_offline("digits").train
    batches = _collect(train, 100)
    assert [len(b.y) for b in batches] == [100] * (len(train) // 100) + [len(train) % 100]
    for batch in batches:
        assert batch.x.shape == (len(batch.y), 1, 8, 8)
        assert batch.x.dtype == torch.float32
        assert batch.y.dtype == torch.int64
        assert batch.sample_index.dtype == torch.int64
        # Without augmentation a batch is exactly the normalised raw samples at sample_index.
        expected = normalise(train.raw[batch.sample_index], train.scale, train.info.mean, train.info.std)
        assert torch.allclose(batch.x, expected, atol=1e-6)
        assert torch.equal(batch.y, train.labels()[batch.sample_index])
    assert torch.equal(torch.cat([b.sample_index for b in batches]), torch.arange(len(train)))


def test_signal_batches_keep_the_signal_shape(load_offline, normalise) -> None:
    val = load_offline("mnist1d").val
    batch = next(iter(val.batches(32, shuffle=True, seed=1)))
    assert batch.x.shape == (32, 1, 40)
    assert torch.allclose(batch.x, normalise(val.raw[batch.sample_index], 1.0, (0.0,), (1.0,)), atol=1e-6)
    assert torch.equal(batch.y, val.labels()[batch.sample_index])


def test_shuffle_is_a_seeded_permutation(load_offline) -> None:
    val = load_offline("digits").val
    order = lambda seed: torch.cat([b.sample_index for b in val.batches(16, shuffle=True, seed=seed)])  # noqa: E731
    first, again, other = order(5), order(5), order(6)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, torch.arange(len(val)))
    assert sorted(first.tolist()) == list(range(len(val)))
    assert sorted(other.tolist()) == list(range(len(val)))


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last(shuffle: bool) -> None:
    split = _image_split(Augmentation(), count=50)
    kept = _collect(split, 16, drop_last=True, shuffle=shuffle)
    assert [len(b.y) for b in kept] == [16, 16, 16]
    assert len(set(torch.cat([b.sample_index for b in kept]).tolist())) == 48
    full = _collect(split, 16, drop_last=False, shuffle=shuffle)
    assert [len(b.y) for b in full] == [16, 16, 16, 2]
    assert _collect(split, 50, drop_last=True)[0].x.shape[0] == 50
    assert _collect(split, 64, drop_last=True) == []


def test_augment_false_is_identity_even_with_augmentation_configured(normalise) -> None:
    split = _image_split(Augmentation(shift=3, hflip=True))
    for batch in split.batches(20, shuffle=True, seed=2, augment=False):
        expected = normalise(split.raw[batch.sample_index], split.scale, split.info.mean, split.info.std)
        assert torch.allclose(batch.x, expected, atol=1e-6)


def test_hflip_gives_the_sample_or_its_mirror(normalise) -> None:
    split = _image_split(Augmentation(hflip=True))
    flipped = unchanged = 0
    for batch in split.batches(16, augment=True, seed=4):
        expected = normalise(split.raw[batch.sample_index], split.scale, split.info.mean, split.info.std)
        for got, want in zip(batch.x, expected, strict=True):
            same, mirror = torch.allclose(got, want, atol=1e-6), torch.allclose(got, want.flip(-1), atol=1e-6)
            assert same or mirror
            flipped += mirror
            unchanged += same
    assert flipped + unchanged == len(split)
    assert flipped > 10 and unchanged > 10  # p = 0.5 each over 64 samples


def test_augmentation_is_reproducible_for_a_seed() -> None:
    split = _image_split(Augmentation(shift=2, hflip=True))
    run = lambda seed: torch.cat([b.x for b in split.batches(16, augment=True, shuffle=True, seed=seed)])  # noqa: E731
    assert torch.equal(run(9), run(9))
    assert not torch.equal(run(9), run(10))


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C, H, W) moved down by dy and right by dx, zero filled."""
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = image[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def test_image_shift_moves_a_centred_blob_without_losing_mass() -> None:
    shift, count = 2, 48
    x = torch.zeros(count, 2, 10, 10)
    x[:, :, 4:6, 3:7] = torch.rand(count, 2, 2, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    out = augment_batch(x, Augmentation(shift=shift), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    offsets = set()
    for before, after in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-shift, shift + 1)
            for dx in range(-shift, shift + 1)
            if torch.equal(after, _shifted(before, dy, dx))
        ]
        assert len(matches) == 1, "every sample must be its original translated by at most `shift`"
        offsets.add(matches[0])
    assert len(offsets) > 5  # 25 possible offsets over 48 samples: the shift really is random per sample


def test_image_shift_zero_fills_at_the_border() -> None:
    x = torch.ones(64, 1, 6, 6)
    out = augment_batch(x, Augmentation(shift=1), torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    # A sample moved by (dy, dx) loses exactly the rows/columns pushed out of the frame.
    lost = 36 - out.sum(dim=(1, 2, 3))
    assert set(lost.tolist()) <= {0.0, 6.0, 11.0}
    assert lost.max() > 0


def test_signal_shift_translates_one_dimensional_samples() -> None:
    shift, count = 3, 40
    x = torch.zeros(count, 1, 30)
    x[:, 0, 12:18] = torch.arange(1.0, 7.0)
    out = augment_batch(x, Augmentation(shift=shift), torch.Generator().manual_seed(2))
    assert out.shape == x.shape
    assert torch.allclose(out.sum(-1), x.sum(-1))
    moves = (out.argmax(-1) - x.argmax(-1)).flatten()
    assert moves.abs().max() <= shift
    for move, after in zip(moves.tolist(), out, strict=True):
        assert torch.equal(after, torch.roll(x[0], move, dims=-1))
    assert len(set(moves.tolist())) > 3


def test_signal_hflip_reverses_time() -> None:
    x = torch.arange(10.0).repeat(32, 2, 1)  # (32, 2, 10)
    out = augment_batch(x, Augmentation(hflip=True), torch.Generator().manual_seed(0))
    reversed_rows = [torch.equal(o, x[0].flip(-1)) for o in out]
    assert all(r or torch.equal(o, x[0]) for r, o in zip(reversed_rows, out, strict=True))
    assert 0 < sum(reversed_rows) < 32


def test_disabled_augmentation() -> None:
    assert not Augmentation().enabled
    assert Augmentation(shift=1).enabled
    assert Augmentation(hflip=True).enabled


def test_subset_and_validation() -> None:
    split = _image_split(Augmentation(), count=10)
    sub = split.subset([7, 2])
    assert len(sub) == 2
    assert torch.equal(sub.raw, split.raw[[7, 2]])
    assert sub.labels().tolist() == [3, 2]
    with pytest.raises(ValueError, match=r"shape \(3, 12, 11\), expected \(3, 12, 12\)"):
        TensorSplit(split.info, split.raw[..., :11], split.targets, 1.0)
    with pytest.raises(ValueError, match="10 samples but 9 labels"):
        TensorSplit(split.info, split.raw, split.targets[:9], 1.0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("augmentation", [Augmentation(shift=2), Augmentation(shift=2, hflip=True)], ids=str)
def test_augmented_batches_have_row_major_strides_so_a_forward_may_view_them(
    channels: int, augmentation: Augmentation
) -> None:
    # With one channel, a permuted batch counts as contiguous yet keeps channels_last strides; a conv's output
    # follows them and `out.view(out.size(0), -1)` in a user's forward then fails.
    split = _image_split(augmentation, channels=channels)
    conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
    for batch in split.batches(16, augment=True, seed=0):
        size = batch.x.shape
        assert batch.x.stride() == (size[1] * size[2] * size[3], size[2] * size[3], size[3], 1)
        out = conv(batch.x)
        assert out.view(out.size(0), -1).shape == (16, 4 * 12 * 12)


def test_augmented_signals_have_row_major_strides() -> None:
    x = torch.rand(8, 2, 30)
    out = augment_batch(x, Augmentation(shift=3), torch.Generator().manual_seed(0))
    assert out.stride() == (60, 30, 1)
