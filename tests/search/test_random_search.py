"""Random search: valid, mostly distinct proposals of the teacher's space, reproducible for a seed."""

from __future__ import annotations

import pytest

from archcompress.models import create_model
from archcompress.search import RandomSearch
from archcompress.space import CompressionSpace


@pytest.fixture(scope="module")
def space() -> CompressionSpace:
    model = create_model("vgg11", (1, 8, 8), 10, {"width": 0.125})
    return CompressionSpace.from_model(model, (1, 8, 8))


def test_proposals_are_valid_and_distinct(space: CompressionSpace) -> None:
    search = RandomSearch(space, seed=0)
    proposals = search.propose(20) + search.propose(20)  # distinct across calls too
    assert len(proposals) == 40
    assert all(space.check(c) is None for c in proposals)
    hashes = {space.candidate_hash(c) for c in proposals}
    assert len(hashes) == 40
    for candidate in proposals:
        assert len(candidate.keep) == len(space.removable_units)
        assert len(candidate.ratios) == len(space.shrink_groups)
        assert set(candidate.ratios) <= set(space.ratios)
    assert any(not all(c.keep) for c in proposals) and any(len(set(c.ratios)) > 1 for c in proposals)


def test_the_same_seed_proposes_the_same_candidates(space: CompressionSpace) -> None:
    first = RandomSearch(space, seed=7)
    second = RandomSearch(space, seed=7)
    assert first.propose(3) + first.propose(5) == second.propose(8)  # batch sizes do not matter
    other = RandomSearch(space, seed=8).propose(8)
    assert other != RandomSearch(space, seed=7).propose(8)


def test_observe_changes_nothing(space: CompressionSpace) -> None:
    observed = RandomSearch(space, seed=3)
    plain = RandomSearch(space, seed=3)
    first = observed.propose(4)
    assert first == plain.propose(4)
    observed.observe([])
    assert observed.propose(4) == plain.propose(4)


def test_a_tiny_space_runs_out_of_new_candidates_without_failing() -> None:
    model = create_model("mlp", (1, 8, 8), 10, {"width": 0.125})
    space = CompressionSpace.from_model(model, (1, 8, 8), ratios=(1.0,))
    search = RandomSearch(space, seed=0, max_redraws=5)
    proposals = search.propose(50)
    distinct = {space.candidate_hash(c) for c in proposals}
    assert len(proposals) == 50  # duplicates are proposed once the space is exhausted (the store dedupes them)
    assert len(distinct) < 50
    assert all(space.check(c) is None for c in proposals)
