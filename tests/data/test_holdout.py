"""stratified_holdout: the documented per-class hold-out rule, checked with hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcompress.data import DataOptions, split_options, stratified_holdout, with_recorded_splits

labels_strategy = st.lists(st.integers(min_value=0, max_value=7), min_size=0, max_size=300).map(
    lambda values: np.asarray(values, dtype=np.int64)
)
fractions = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)
seeds = st.integers(min_value=0, max_value=10_000)


@settings(max_examples=150, deadline=None)
@given(labels=labels_strategy, fraction=fractions, seed=seeds)
def test_holdout_partitions_per_class(labels: np.ndarray, fraction: float, seed: int) -> None:
    kept, held = stratified_holdout(labels, fraction, seed)
    assert kept.dtype.kind == "i" and held.dtype.kind == "i"
    # Disjoint, and together exactly all indices.
    assert np.intersect1d(kept, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    # Sorted outputs without repeats.
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)
    # Per class exactly round(fraction * n_c) held out.
    for cls in np.unique(labels):
        n_c = int(np.sum(labels == cls))
        assert int(np.sum(labels[held] == cls)) == round(fraction * n_c)
        assert int(np.sum(labels[kept] == cls)) == n_c - round(fraction * n_c)


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, fraction=fractions, seed=seeds)
def test_holdout_is_deterministic(labels: np.ndarray, fraction: float, seed: int) -> None:
    first = stratified_holdout(labels, fraction, seed)
    second = stratified_holdout(labels.copy(), fraction, seed)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, fraction=fractions, seed=seeds)
def test_holdout_follows_the_documented_rng_rule(labels: np.ndarray, fraction: float, seed: int) -> None:
    expected = [
        np.random.default_rng(seed + int(c)).permutation(np.flatnonzero(labels == c))[
            : round(fraction * int(np.sum(labels == c)))
        ]
        for c in np.unique(labels)
    ]
    held = np.sort(np.concatenate(expected)) if expected else np.array([], dtype=np.int64)
    assert np.array_equal(stratified_holdout(labels, fraction, seed)[1], held)


def test_holdout_depends_on_the_seed() -> None:
    labels = np.repeat(np.arange(5), 40)
    held = {tuple(stratified_holdout(labels, 0.25, seed)[1]) for seed in range(5)}
    assert len(held) == 5
    assert all(len(h) == 50 for h in held)


def test_holdout_edge_cases() -> None:
    kept, held = stratified_holdout(np.array([], dtype=np.int64), 0.5, 0)
    assert kept.size == 0 and held.size == 0
    kept, held = stratified_holdout(np.array([3, 3, 1, 1]), 0.0, 0)
    assert kept.tolist() == [0, 1, 2, 3] and held.size == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_holdout_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"hold-out fraction must be in \[0, 1\)"):
        stratified_holdout(np.arange(10) % 2, fraction, 0)


def test_a_teachers_recorded_split_options_fill_only_those_left_at_their_defaults() -> None:
    recorded = split_options(DataOptions(val_fraction=0.2, split_seed=3, image_size=64))
    assert recorded == {"val_fraction": 0.2, "split_seed": 3, "image_size": 64}
    assert with_recorded_splits(DataOptions(), recorded) == DataOptions(val_fraction=0.2, split_seed=3, image_size=64)
    chosen = with_recorded_splits(DataOptions(image_size=96, workers=2), recorded)  # set by the user: kept
    assert chosen == DataOptions(val_fraction=0.2, split_seed=3, image_size=96, workers=2)
    assert with_recorded_splits(DataOptions(), None) == DataOptions()  # a teacher from before they were recorded
