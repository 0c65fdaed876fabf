"""Candidate JSON form and canonical hashing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcompress.errors import ArchcompressError
from archcompress.space import Candidate, CompressionSpace


@st.composite
def candidates(draw: st.DrawFn, space: CompressionSpace) -> Candidate:
    """Any candidate of the space (valid or not), ratios from the space's ratio sets."""
    n_keep, n_ratio, n_kernel = len(space.removable_units), len(space.shrink_groups), len(space.kernel_units)
    return Candidate(
        keep=draw(st.lists(st.booleans(), min_size=n_keep, max_size=n_keep)),
        ratios=draw(st.lists(st.sampled_from(space.ratios), min_size=n_ratio, max_size=n_ratio)),
        kernel_ratios=draw(
            st.lists(st.sampled_from(space.kernel_ratios or (1.0,)), min_size=n_kernel, max_size=n_kernel)
        ),
    )


def test_json_round_trip_is_exact() -> None:
    candidate = Candidate(keep=[True, False], ratios=[0.25, 0.5, 1.0], kernel_ratios=[0.6])
    text = candidate.to_json()
    assert json.loads(text) == {"version": 1, "keep": [True, False], "ratios": [0.25, 0.5, 1.0], "kernel_ratios": [0.6]}
    assert Candidate.from_json(text) == candidate
    assert Candidate.from_dict(json.loads(text)) == candidate


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_json_round_trip_random(teacher_space, data: st.DataObject) -> None:
    _, space = teacher_space("torchvision:mobilenet_v2", (3, 32, 32))
    candidate = data.draw(candidates(space))
    again = Candidate.from_json(candidate.to_json())
    assert again == candidate
    assert space.candidate_hash(again) == space.candidate_hash(candidate)


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '{"keep": [true]}',
        '{"version": 2, "keep": [], "ratios": []}',
        "not json",
        '{"keep": [], "ratios": ["x"]}',
    ],
)
def test_malformed_json_fails_clearly(text: str) -> None:
    with pytest.raises(ArchcompressError):
        Candidate.from_json(text)


def test_candidate_for_another_space_is_refused(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    with pytest.raises(ArchcompressError, match="made for another teacher"):
        space.check(Candidate(keep=(True,), ratios=(1.0,)))


def _resnet20_block(space: CompressionSpace, name: str) -> tuple[int, int, int]:
    """(keep position of the block, keep position of its conv1, ratio position of its conv1 group)."""
    block = next(u for u in space.units if u.name == name)
    conv1 = space.units[block.body[0]]
    assert block.keep_index is not None and conv1.keep_index is not None and conv1.shrink_group is not None
    return block.keep_index, conv1.keep_index, conv1.shrink_group


def _with(
    candidate: Candidate, keep: dict[int, bool] | None = None, ratios: dict[int, float] | None = None
) -> Candidate:
    flags, values = list(candidate.keep), list(candidate.ratios)
    for i, k in (keep or {}).items():
        flags[i] = k
    for i, r in (ratios or {}).items():
        values[i] = r
    return Candidate(flags, values, candidate.kernel_ratios)


def test_hash_ignores_settings_of_removed_units(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    block, conv1, group = _resnet20_block(space, "layers.1.1")
    removed = _with(space.teacher_candidate(), keep={block: False})
    variants = [
        _with(removed, ratios={group: 0.25}),  # the ratio of a group that only lives inside the removed block
        _with(removed, keep={conv1: False}),  # a flag of a unit inside the removed block
        _with(space.teacher_candidate(), keep={conv1: False, conv1 + 1: False}),  # body emptied = block removed
    ]
    assert len({space.candidate_hash(c) for c in [removed, *variants]}) == 1
    assert space.candidate_hash(removed) != space.candidate_hash(space.teacher_candidate())


def test_a_relu_after_a_relu_is_one_network_kept_or_removed(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    block, _, _ = _resnet20_block(space, "layers.0.1")
    relu = next(u for u in space.units if u.name.startswith("layers.0.1:relu")).keep_index
    first_block, _, _ = _resnet20_block(space, "layers.0.0")
    assert relu is not None
    teacher = space.teacher_candidate()
    # both blocks gone: the ReLU after the second one gets the stem's ReLU output, already non-negative
    removed = _with(teacher, keep={first_block: False, block: False})
    assert space.candidate_hash(removed) == space.candidate_hash(_with(removed, keep={relu: False}))
    assert space.arch(removed) == space.arch(_with(removed, keep={relu: False}))
    # the block before it kept: its ReLU acts on the residual sum, so removing it is another network
    assert space.candidate_hash(teacher) != space.candidate_hash(_with(teacher, keep={relu: False}))
    # only the first block gone: the second one's sum still reaches the ReLU
    one = _with(teacher, keep={first_block: False})
    assert space.candidate_hash(one) != space.candidate_hash(_with(one, keep={relu: False}))


def test_hash_equal_for_ratios_giving_equal_widths(teacher_space) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    _, _, group = _resnet20_block(space, "layers.0.0")  # a 16-channel group: 0.25 and 0.5 both keep 10
    base = space.teacher_candidate()
    quarter, half, most = (_with(base, ratios={group: r}) for r in (0.25, 0.5, 0.9))
    assert space.candidate_hash(quarter) == space.candidate_hash(half)
    assert space.candidate_hash(half) != space.candidate_hash(most)
    assert space.canonical(quarter).ratios[group] == 0.625  # 10 of 16 channels


def test_hash_is_stable_across_spaces_of_the_same_teacher(teacher_space) -> None:
    teacher, space = teacher_space("vgg11", (1, 28, 28))
    again = CompressionSpace.from_model(teacher, (1, 28, 28))
    candidate = space.sample(3)
    assert again.candidate_hash(candidate) == space.candidate_hash(candidate)
    assert len(space.candidate_hash(candidate)) == 16


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_canonical_is_idempotent_and_keeps_the_network(teacher_space, data: st.DataObject) -> None:
    _, space = teacher_space("resnet20", (3, 32, 32))
    candidate = data.draw(candidates(space))
    canonical = space.canonical(candidate)
    assert space.canonical(canonical) == canonical
    assert space.check(candidate) == space.check(canonical)
    if space.check(candidate) is None:
        assert space.arch(canonical) == space.arch(candidate)
