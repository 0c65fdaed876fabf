"""Transfer of N2N policies between teachers: softening, re-initialised width choices, relative unit features."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import torch

from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.search.n2n.features import RELATIVE_COLUMNS, policy_features
from archcompress.search.n2n.policies import RemovalPolicy, ShrinkPolicy, expected_kept, shift_to_keep
from archcompress.search.n2n.search import N2NSearch, unseen_kinds_note
from archcompress.space import FEATURE_SCHEMA, CompressionSpace

from .test_n2n_search import _search, _to_stage2, fake_result


@functools.cache
def _space(model: str, **kwargs: float) -> CompressionSpace:
    torch.manual_seed(0)
    return CompressionSpace.from_model(create_model(model, (1, 28, 28), 10, kwargs).eval(), (1, 28, 28))


@pytest.fixture(scope="module")
def vgg19() -> CompressionSpace:
    return _space("vgg19", width=0.25)


def _trained_policies(space: CompressionSpace, directory: Path, updates: int = 3, **options: object) -> N2NSearch:
    """A search that learnt for a few updates on ``space`` and saved its policies to ``directory``."""
    search = _search(space, **options)
    for _ in range(updates):
        search.observe([fake_result(space, c) for c in search.propose(5)])
    _to_stage2(search, space)
    search.observe([fake_result(space, c) for c in search.propose(5)])
    search.save_policies(directory)
    return search


def test_a_temperature_divides_the_logits_of_both_policies() -> None:
    torch.manual_seed(0)
    features = torch.rand(6, len(FEATURE_SCHEMA))
    removal, shrink = RemovalPolicy(len(FEATURE_SCHEMA)), ShrinkPolicy(len(FEATURE_SCHEMA), 4)
    actions = torch.tensor([0, 1, 2, 3, 0, 1])
    cold_removal, cold_shrink = removal(features), shrink(features, actions)
    removal.temperature = shrink.temperature = 2.5
    torch.testing.assert_close(removal(features), cold_removal / 2.5)
    torch.testing.assert_close(shrink(features, actions), cold_shrink / 2.5)
    # sampling scores the actions under the softened distribution, so REINFORCE stays on-policy
    sample = shrink.sample(features, torch.Generator().manual_seed(1))
    log_prob, _ = shrink.log_prob(features, sample.actions)
    torch.testing.assert_close(sample.log_prob, log_prob)


def test_loaded_policies_start_soft_and_cool_to_one_as_they_update(
    space: CompressionSpace, vgg19: CompressionSpace, tmp_path: Path
) -> None:
    _trained_policies(space, tmp_path)
    search = _search(vgg19, policy=str(tmp_path), transfer_temperature=3.0, transfer_anneal=2)
    assert search.removal.temperature == search.shrink.temperature == 3.0
    temperatures = []
    for _ in range(3):
        search.observe([fake_result(vgg19, c) for c in search.propose(5)])
        temperatures.append(search.removal.temperature)
    assert temperatures == [2.0, 1.0, 1.0]
    assert search.shrink.temperature == 3.0  # stage 2 has not updated yet: its own schedule
    scratch = _search(vgg19, transfer_temperature=3.0)  # without --policy nothing is softened
    assert scratch.removal.temperature == scratch.shrink.temperature == 1.0


def test_softened_transferred_policies_draw_more_varied_rollouts(
    space: CompressionSpace, vgg19: CompressionSpace, tmp_path: Path
) -> None:
    # a policy that learnt to keep everything: sharp logits from its head's bias
    search = _search(space)
    with torch.no_grad():
        search.removal.head.bias.copy_(torch.tensor([-4.0, 4.0]))
    search.save_policies(tmp_path)
    sharp = _search(vgg19, policy=str(tmp_path))
    soft = _search(vgg19, policy=str(tmp_path), transfer_temperature=4.0)
    entropy_sharp = float(sum(sharp.removal.sample(sharp.features, sharp.removable).entropy.detach() for _ in range(3)))
    entropy_soft = float(sum(soft.removal.sample(soft.features, soft.removable).entropy.detach() for _ in range(3)))
    assert entropy_soft > 2 * entropy_sharp


def test_reset_reinitialises_only_the_stage2_output_layer(
    space: CompressionSpace, vgg19: CompressionSpace, tmp_path: Path
) -> None:
    source = _trained_policies(space, tmp_path)
    saved = source.shrink_policy_to_keep()
    kept = _search(vgg19, policy=str(tmp_path))
    reset = _search(vgg19, policy=str(tmp_path), transfer_reset="shrink-head")
    for name, value in saved.items():
        assert torch.equal(kept.shrink.state_dict()[name], value)
        assert torch.equal(reset.shrink.state_dict()[name], value) != name.startswith("head.")
    assert torch.equal(reset.removal.head.weight, kept.removal.head.weight)  # stage 1 carries over whole
    again = _search(vgg19, policy=str(tmp_path), transfer_reset="shrink-head")
    assert torch.equal(again.shrink.head.weight, reset.shrink.head.weight)  # seeded: a resumed run replays it


def test_shifting_the_keep_logit_sets_the_expected_number_of_kept_units() -> None:
    torch.manual_seed(0)
    features, removable = torch.rand(9, len(FEATURE_SCHEMA)), torch.tensor([True] * 7 + [False] * 2)
    policy = RemovalPolicy(len(FEATURE_SCHEMA), init_keep_prob=0.8)
    policy.temperature = 3.0  # the count is taken at temperature 1 either way
    assert expected_kept(policy, features, removable) == pytest.approx(0.8 * 7, abs=0.3)
    shift_to_keep(policy, features, removable, 2.0)
    assert expected_kept(policy, features, removable) == pytest.approx(2.0, abs=1e-4)
    shift_to_keep(policy, features, removable, 99.0)  # more than there are: clipped inside
    assert expected_kept(policy, features, removable) == pytest.approx(6.5, abs=1e-4)


def test_count_keeps_as_many_units_on_the_deeper_teacher_as_on_its_own(
    space: CompressionSpace, vgg19: CompressionSpace, tmp_path: Path
) -> None:
    source = _trained_policies(space, tmp_path)
    kept = expected_kept(source.removal, source.features, source.removable)
    assert torch.load(tmp_path / "removal.pt", weights_only=True)["expected_kept"] == pytest.approx(kept)
    share = _search(vgg19, policy=str(tmp_path))
    count = _search(vgg19, policy=str(tmp_path), transfer_keep="count")
    assert expected_kept(share.removal, share.features, share.removable) > 1.4 * kept  # 19 removable units, not 11
    assert expected_kept(count.removal, count.features, count.removable) == pytest.approx(kept, abs=1e-3)
    payload = torch.load(tmp_path / "removal.pt", weights_only=True)
    del payload["expected_kept"]
    torch.save(payload, tmp_path / "removal.pt")
    with pytest.raises(ArchcompressError, match="does not record how many units"):
        _search(vgg19, policy=str(tmp_path), transfer_keep="count")


def test_relative_features_scale_size_columns_to_the_teacher(space: CompressionSpace, vgg19: CompressionSpace) -> None:
    absolute, relative = policy_features(vgg19, "absolute"), policy_features(vgg19, "relative")
    sized = [FEATURE_SCHEMA.names.index(name) for name in RELATIVE_COLUMNS]
    others = [i for i in range(len(FEATURE_SCHEMA)) if i not in sized]
    assert (relative[:, others] == absolute[:, others]).all()
    assert relative[:, sized].max(axis=0).tolist() == pytest.approx([1.0] * len(sized))
    # the largest conv's parameter share: smaller in the deeper VGG-19 (absolute), the same in both (relative)
    share = FEATURE_SCHEMA.names.index("param_share")
    small, large = policy_features(space, "absolute")[:, share].max(), absolute[:, share].max()
    assert large < 0.8 * small
    assert policy_features(space, "relative")[:, share].max() == relative[:, share].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="absolute, relative"):
        policy_features(vgg19, "scaled")


def test_a_policy_trained_on_other_features_is_refused_in_one_line(space: CompressionSpace, tmp_path: Path) -> None:
    _trained_policies(space, tmp_path, features="relative")
    with pytest.raises(ArchcompressError, match=r"relative unit features.*pass --policy-features relative") as error:
        _search(space, policy=str(tmp_path))
    assert "\n" not in str(error.value)
    reads = _search(space, policy=str(tmp_path), features="relative").features
    assert torch.equal(reads, torch.as_tensor(policy_features(space, "relative")))


FAMILIES = [(("vgg11", 0.25), ("vgg19", 0.25)), (("resnet20", 0.5), ("resnet56", 0.5))]


@pytest.mark.parametrize(("source", "target"), FAMILIES)
def test_policies_run_on_a_deeper_teacher_of_their_family(
    source: tuple[str, float], target: tuple[str, float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small, large = _space(source[0], width=source[1]), _space(target[0], width=target[1])
    assert len(large.units) > len(small.units)
    _trained_policies(small, tmp_path, features="relative")
    with caplog.at_level(logging.WARNING, logger="archcompress"):
        search = _search(large, policy=str(tmp_path), features="relative", transfer_temperature=2.0)
        _to_stage2(search, large)
        proposals = search.propose(5)
    assert len(proposals) == 5 and all(large.check(c) is None for c in proposals)
    assert not caplog.records  # same family: every kind of unit was seen


def test_a_policy_from_another_family_warns_which_units_it_never_saw(space: CompressionSpace, tmp_path: Path) -> None:
    _trained_policies(space, tmp_path)
    resnet = _space("resnet20", width=0.5)
    saved = torch.load(tmp_path / "removal.pt", map_location="cpu", weights_only=True)
    note = unseen_kinds_note(tmp_path, saved, resnet)
    assert note is not None and "block" in note.split(" units:")[0] and "\n" not in note
    assert unseen_kinds_note(tmp_path, saved, space) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transfer_temperature": 0.0}, "--transfer-temperature must be above 0"),
        ({"transfer_anneal": -1}, "--transfer-anneal must be 0 or more"),
        ({"transfer_reset": "all"}, "--transfer-reset must be one of none, shrink-head"),
        ({"transfer_keep": "all"}, "--transfer-keep must be one of share, count"),
        ({"features": "scaled"}, "--policy-features must be one of absolute, relative"),
    ],
)
def test_impossible_transfer_settings_are_refused(space: CompressionSpace, options: dict, message: str) -> None:
    with pytest.raises(ArchcompressError, match=message):
        _search(space, **options)
