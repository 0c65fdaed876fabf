"""The token codec of the embedding search: layout, exact round trips, group agreement and valid decodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archcompress.models import create_model
from archcompress.search.embedding.codec import NO_CHOICE, STUDENT_COLUMNS, FeatureNorm, TokenCodec
from archcompress.space import Candidate, CompressionSpace


@pytest.fixture(scope="module")
def vgg() -> CompressionSpace:
    torch.manual_seed(0)
    return CompressionSpace.from_model(create_model("vgg11", (1, 28, 28), 10, {"width": 0.25}).eval(), (1, 28, 28))


@pytest.fixture(scope="module")
def resnet() -> CompressionSpace:
    """Residual blocks: several units share one shrink group (everything joined by one addition)."""
    torch.manual_seed(0)
    return CompressionSpace.from_model(create_model("resnet20", (3, 32, 32), 10).eval(), (3, 32, 32))


def _random(space: CompressionSpace, count: int, seed: int = 0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng, keep_prob=float(rng.uniform(0.3, 1.0))) for _ in range(count)]


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_token_layout(name: str, request: pytest.FixtureRequest) -> None:
    space: CompressionSpace = request.getfixturevalue(name)
    codec = TokenCodec(space)
    candidates = _random(space, 6)
    tokens = codec.encode(candidates)
    units, f = len(space.units), codec.static_dim
    assert tokens.shape == (6, units, codec.token_dim)
    assert codec.token_dim == f + len(STUDENT_COLUMNS) + 1 + len(set(space.ratios))
    # static part: the normalised unit features, the same for every candidate
    assert torch.allclose(tokens[:, :, :f], torch.as_tensor(codec.norm.apply(space.features())).expand(6, -1, -1))
    keep = tokens[:, :, f + len(STUDENT_COLUMNS)]
    fixed = ~codec.keep_mask
    assert bool((keep[:, fixed] == 1).all())  # units that cannot be removed are always kept
    one_hot = tokens[:, :, f + len(STUDENT_COLUMNS) + 1 :]
    assert torch.equal(one_hot.sum(-1), codec.ratio_mask.float().expand(6, -1))  # one choice per unit with a group
    # the param-share column sums to the student's share of the teacher's parameters (times the unit count)
    shares = tokens[:, :, f + STUDENT_COLUMNS.index("param_share")].sum(1) / units
    expected = torch.tensor([space.cost(c).params / space.teacher_cost.params for c in candidates])
    assert torch.allclose(shares, expected, rtol=1e-5)


def test_feature_norm_standardises_varying_columns_and_centres_constant_ones(vgg: CompressionSpace) -> None:
    features = vgg.features()
    norm = FeatureNorm.of(features)
    normalised = norm.apply(features)
    varying = features.std(axis=0) > 1e-3
    assert np.allclose(normalised.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(normalised[:, varying].std(axis=0), 1.0, atol=1e-4)
    assert np.allclose(normalised[:, ~varying], 0.0)


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_choices_round_trip_gives_the_same_student(name: str, request: pytest.FixtureRequest) -> None:
    space: CompressionSpace = request.getfixturevalue(name)
    codec = TokenCodec(space)
    candidates = [*_random(space, 40, seed=1), space.teacher_candidate(), space.uniform_candidate(0.25)]
    choices = codec.choices(candidates)
    for index, candidate in enumerate(candidates):
        decoded = codec.decode_choices(choices, index)
        assert space.candidate_hash(decoded) == space.candidate_hash(candidate)
        assert all(r in space.ratios for r in decoded.ratios)
        assert codec.snap(candidate) == decoded  # the canonical spelling on the ratio set


def test_snap_maps_exact_fractions_back_onto_the_ratio_set(vgg: CompressionSpace) -> None:
    codec = TokenCodec(vgg)
    candidate = vgg.uniform_candidate(0.25)
    canonical = vgg.canonical(candidate)
    assert any(r not in vgg.ratios for r in canonical.ratios)  # min_channels turns 0.25 into odd fractions
    snapped = codec.snap(candidate)
    assert all(r in vgg.ratios for r in snapped.ratios)
    assert vgg.candidate_hash(snapped) == vgg.candidate_hash(candidate)


def test_units_of_one_shrink_group_share_one_target_and_average_their_logits(resnet: CompressionSpace) -> None:
    codec = TokenCodec(resnet)
    shared = max(codec.group_units, key=len)
    assert len(shared) >= 3  # the residual group of the first stage
    group = resnet.units[shared[0]].shrink_group
    assert group is not None
    choices = codec.choices(_random(resnet, 5))
    assert bool((choices.ratio[:, shared] == choices.ratio[:, shared[:1]]).all())
    assert bool((choices.ratio[:, ~codec.ratio_mask] == NO_CHOICE).all())
    # the units disagree: one votes strongly for the smallest ratio, the others mildly for the largest
    values = codec.ratio_values
    keep = torch.full((len(resnet.units),), 5.0)
    ratio = torch.zeros(len(resnet.units), len(values))
    ratio[shared, -1] = 1.0
    ratio[shared[0], 0] = 10.0
    assert codec.decode(keep, ratio).ratios[group] == values[0]  # mean logit: 10 / n beats 1
    ratio[shared[0], 0] = 0.5
    assert codec.decode(keep, ratio).ratios[group] == values[-1]


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_decodes_of_arbitrary_logits_are_valid_candidates(name: str, request: pytest.FixtureRequest) -> None:
    space: CompressionSpace = request.getfixturevalue(name)
    codec = TokenCodec(space)
    generator = torch.Generator().manual_seed(0)
    units, classes = len(space.units), len(codec.ratio_values)
    keep = torch.randn(64, units, generator=generator) * 3 - 1  # mostly removing, often into invalid networks
    ratio = torch.randn(64, units, classes, generator=generator) * 3
    for candidate in codec.decode_batch(keep, ratio, None):
        assert space.check(candidate) is None
        assert len(candidate.keep) == len(space.removable_units) and len(candidate.ratios) == len(space.shrink_groups)


def test_an_invalid_decode_is_repaired_by_putting_back_the_least_sure_removals() -> None:
    torch.manual_seed(0)
    lenet = CompressionSpace.from_model(create_model("lenet5", (1, 28, 28), 10).eval(), (1, 28, 28))
    codec = TokenCodec(lenet)
    removed_all = Candidate((False,) * len(lenet.removable_units), lenet.teacher_candidate().ratios)
    assert "more parameters" in (lenet.check(removed_all) or "")  # without pooling the classifier grows
    keep = torch.full((len(lenet.units),), -5.0)
    keep[[u.index for u in lenet.units if u.kind == "pool"]] = -1.0  # the decoder is least sure about the pools
    ratio = torch.zeros(len(lenet.units), len(codec.ratio_values))
    decoded = codec.decode(keep, ratio)
    assert lenet.check(decoded) is None
    restored = {lenet.units[u].kind for u, k in zip(lenet.removable_units, decoded.keep, strict=True) if k}
    assert restored == {"pool"}  # a pool came back, the convolution stayed removed


def test_kernel_ratios_are_encoded_and_decoded_when_the_space_shrinks_kernels() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", (1, 28, 28), 10).eval()
    space = CompressionSpace.from_model(model, (1, 28, 28), kernel_ratios=(0.6, 1.0))
    codec = TokenCodec(space)
    assert codec.kernel_values == (0.6, 1.0) and len(space.kernel_units) == 2
    assert codec.token_dim == codec.static_dim + len(STUDENT_COLUMNS) + 1 + len(codec.ratio_values) + 2
    candidates = _random(space, 20, seed=2)
    assert {c.kernel_ratios for c in candidates} != {(1.0, 1.0)}
    choices = codec.choices(candidates)
    for index, candidate in enumerate(candidates):
        assert space.candidate_hash(codec.decode_choices(choices, index)) == space.candidate_hash(candidate)
    kernel_hot = codec.encode(candidates)[:, :, -2:]
    assert torch.equal(kernel_hot.sum(-1), codec.kernel_mask.float().expand(20, -1))
    units = len(space.units)
    keep, ratio, kernel = torch.zeros(units), torch.zeros(units, len(codec.ratio_values)), torch.zeros(units, 2)
    kernel[list(space.kernel_units), 0] = 1.0  # every kernel unit prefers 0.6
    assert codec.decode(keep, ratio, kernel).kernel_ratios == (0.6, 0.6)
