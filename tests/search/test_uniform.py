"""Uniform baseline: a finite, deterministic sweep of one width multiplier (and uniform depth cuts)."""

from __future__ import annotations

import math

import pytest

from archcompress.models import create_model
from archcompress.search import Search
from archcompress.search.uniform import UniformSearch
from archcompress.space import Candidate, CompressionSpace


@pytest.fixture(scope="module")
def vgg() -> CompressionSpace:
    model = create_model("vgg11", (1, 8, 8), 10, {"width": 0.25})
    return CompressionSpace.from_model(model, (1, 8, 8))


@pytest.fixture(scope="module")
def resnet() -> CompressionSpace:
    model = create_model("resnet20", (3, 8, 8), 10, {"width": 2.0})
    return CompressionSpace.from_model(model, (3, 8, 8), min_channels=4)


def compression(space: CompressionSpace, candidate: Candidate) -> float:
    return space.teacher_cost.params / space.cost(candidate).params


def drain(search: UniformSearch, count: int = 7) -> list[Candidate]:
    proposals: list[Candidate] = []
    while batch := search.propose(count):
        assert len(batch) <= count
        proposals += batch
    return proposals


def check_sweep(space: CompressionSpace, proposals: list[Candidate]) -> None:
    assert proposals
    assert all(space.check(c) is None for c in proposals)
    hashes = [space.candidate_hash(c) for c in proposals]
    assert len(set(hashes)) == len(hashes)
    assert space.candidate_hash(space.teacher_candidate()) not in hashes
    assert all(len(set(c.ratios)) == 1 for c in proposals)  # one multiplier for every shrink group


def test_without_target_sweeps_the_ratio_set_from_large_to_small(vgg: CompressionSpace) -> None:
    search = UniformSearch(vgg, seed=0)
    protocol: Search = search  # follows the search protocol
    assert protocol.name == "uniform"
    proposals = drain(search)
    check_sweep(vgg, proposals)
    assert [c.ratios[0] for c in proposals] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.25]  # 1.0 is the teacher itself
    assert all(all(c.keep) for c in proposals)
    params = [vgg.cost(c).params for c in proposals]
    assert params == sorted(params, reverse=True)


def test_an_exhausted_sweep_proposes_nothing(vgg: CompressionSpace) -> None:
    search = UniformSearch(vgg, seed=0)
    assert len(search.propose(4)) == 4
    assert len(search.propose(4)) == 2  # fewer than asked: the sweep is running out
    assert search.propose(4) == []
    search.observe([])
    assert search.propose(1) == []


@pytest.mark.parametrize("target", [3.0, 10.0, 30.0])
def test_the_first_proposal_is_the_largest_multiplier_that_meets_the_target(
    vgg: CompressionSpace, target: float
) -> None:
    search = UniformSearch(vgg, seed=0, target=target)
    proposals = drain(search)
    check_sweep(vgg, proposals)
    first = proposals[0]
    assert compression(vgg, first) >= target
    assert compression(vgg, first) < target * 1.3  # hits the target closely, unlike the ratio set
    wider = Candidate(first.keep, tuple(r + 0.02 for r in first.ratios))
    assert compression(vgg, wider) < target  # a little wider no longer meets it
    # the ratio-set neighbours follow, nearest compression to the target first (on a log scale)
    assert {c.ratios[0] for c in proposals[1:]} <= set(vgg.ratios)
    gaps = [abs(math.log(compression(vgg, c) / target)) for c in proposals[1:]]
    assert gaps == sorted(gaps)


def test_the_same_settings_propose_the_same_sweep(resnet: CompressionSpace) -> None:
    first = drain(UniformSearch(resnet, seed=0, target=8.0, depth=True), count=3)
    second = drain(UniformSearch(resnet, seed=5, target=8.0, depth=True), count=50)
    assert first == second


def test_depth_drops_whole_layers_and_blocks_uniformly(resnet: CompressionSpace) -> None:
    search = UniformSearch(resnet, seed=0, target=8.0, depth=True)
    masks = search.depth_masks()
    assert masks[0] == (True,) * len(resnet.removable_units)
    assert len(masks) == 5  # full depth, then every 4th, 3rd, 2nd and every layer unit dropped
    for mask in masks[1:]:
        dropped = [resnet.units[resnet.removable_units[p]] for p, kept in enumerate(mask) if not kept]
        assert dropped and all(u.kind in ("conv", "block") for u in dropped)
        assert all(u.parent is None or not resnet.units[u.parent].removable for u in dropped)
    proposals = drain(search)
    check_sweep(resnet, proposals)
    assert any(not all(c.keep) for c in proposals)
    # one proposal per reachable depth pattern comes first, each at the largest multiplier meeting the target
    leading = proposals[: len(masks)]
    assert {c.keep for c in leading} <= set(masks)
    assert all(compression(resnet, c) >= 8.0 for c in leading)


def test_an_unreachable_target_still_sweeps_the_ratio_set(vgg: CompressionSpace) -> None:
    search = UniformSearch(vgg, seed=0, target=1e9)
    assert search.largest_multiplier(search.depth_masks()[0], 1e9) is None
    proposals = drain(search)
    check_sweep(vgg, proposals)
    assert sorted(c.ratios[0] for c in proposals) == [0.25, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert proposals[0].ratios[0] == 0.25  # the most compressed first: nearest the target
