"""The N2N removal and shrink policies: shapes, masks, log-probabilities, determinism, rebuild from config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from archcompress.search.n2n.policies import KEEP, REMOVE, RemovalPolicy, ShrinkPolicy

FEATURES = 6
CHOICES = 4


def unit_features(num_units: int, seed: int = 0) -> Tensor:
    return torch.randn(num_units, FEATURES, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def removal(**kwargs: float) -> RemovalPolicy:
    torch.manual_seed(0)
    return RemovalPolicy(FEATURES, **kwargs)  # type: ignore[arg-type]


def shrink() -> ShrinkPolicy:
    torch.manual_seed(0)
    return ShrinkPolicy(FEATURES, CHOICES)


def reference_shrink_logits(policy: ShrinkPolicy, features: Tensor, actions: Tensor) -> Tensor:
    """An independent unroll of the two cells, feeding back the one-hot of the previous action."""
    h = [torch.zeros(1, policy.hidden) for _ in range(2)]
    c = [torch.zeros(1, policy.hidden) for _ in range(2)]
    prev = torch.zeros(1, CHOICES)
    rows = []
    for t in range(len(actions)):
        h[0], c[0] = policy.cells[0](torch.cat([features[t : t + 1], prev], dim=1), (h[0], c[0]))
        h[1], c[1] = policy.cells[1](h[0], (h[1], c[1]))
        rows.append(policy.head(h[1]))
        prev = F.one_hot(actions[t : t + 1], CHOICES).float()
    return torch.cat(rows)


# --- removal policy -------------------------------------------------------------------------------------------


def test_removal_logits_and_sample_shapes() -> None:
    policy = removal()
    features = unit_features(7)
    assert policy(features).shape == (7, 2)
    sample = policy.sample(features, torch.ones(7, dtype=torch.bool), gen(0))
    assert sample.actions.shape == (7,)
    assert sample.actions.dtype == torch.long
    assert set(sample.actions.tolist()) <= {KEEP, REMOVE}
    assert sample.log_prob.shape == () and sample.log_prob.requires_grad
    assert sample.entropy.shape == () and sample.entropy.item() > 0


def test_non_removable_units_are_always_kept_and_score_nothing() -> None:
    policy = removal()
    features = unit_features(6)
    removable = torch.tensor([True, False, True, False, True, False])
    g = gen(1)
    actions = torch.stack([policy.sample(features, removable, g).actions for _ in range(300)])  # (300, T)
    assert bool((actions[:, ~removable] == KEEP).all())
    # the removable ones are really sampled: each is removed sometimes and kept sometimes
    removed_rate = (actions[:, removable] == REMOVE).float().mean(dim=0)
    assert bool(((removed_rate > 0.1) & (removed_rate < 0.9)).all())

    nothing = policy.sample(features, torch.zeros(6, dtype=torch.bool), g)
    assert bool((nothing.actions == KEEP).all())
    assert nothing.log_prob.item() == 0.0 and nothing.entropy.item() == 0.0


def test_removal_log_prob_matches_sample_and_hand_computed_sum() -> None:
    policy = removal()
    features = unit_features(9)
    removable = torch.tensor([True, True, False, True, True, True, False, True, True])
    sample = policy.sample(features, removable, gen(2))
    log_prob, entropy = policy.log_prob(features, removable, sample.actions)
    torch.testing.assert_close(log_prob, sample.log_prob)
    torch.testing.assert_close(entropy, sample.entropy)

    logp = F.log_softmax(policy(features), dim=-1).detach()  # (T, 2)
    by_hand = sum(float(logp[t, int(sample.actions[t])]) for t in range(9) if removable[t])
    ent_by_hand = sum(-float((logp[t].exp() * logp[t]).sum()) for t in range(9) if removable[t])
    assert sample.log_prob.item() == pytest.approx(by_hand, abs=1e-5)
    assert sample.entropy.item() == pytest.approx(ent_by_hand, abs=1e-5)


def test_removal_rejects_removing_a_fixed_unit() -> None:
    policy = removal()
    with pytest.raises(ValueError, match="not removable"):
        policy.log_prob(unit_features(3), torch.tensor([True, False, True]), torch.tensor([1, 0, 1]))


def test_removal_is_bidirectional() -> None:
    policy = removal()
    features = unit_features(5)
    changed = features.clone()
    changed[-1] += 1.0
    # the first unit's decision sees the last unit (backward direction), the last sees the first (forward)
    assert not torch.allclose(policy(features)[0], policy(changed)[0])
    changed = features.clone()
    changed[0] += 1.0
    assert not torch.allclose(policy(features)[-1], policy(changed)[-1])


@pytest.mark.parametrize("keep_prob", [0.5, 0.7, 0.9])
def test_initial_keep_probability_is_configurable(keep_prob: float) -> None:
    policy = removal(init_keep_prob=keep_prob)
    p_keep = F.softmax(policy(unit_features(50)), dim=-1)[:, KEEP]
    assert p_keep.mean().item() == pytest.approx(keep_prob, abs=0.08)


def test_removal_empty_sequence() -> None:
    policy = removal()
    sample = policy.sample(torch.zeros(0, FEATURES), torch.zeros(0, dtype=torch.bool), gen(0))
    assert sample.actions.shape == (0,)
    assert sample.log_prob.item() == 0.0
    sample.log_prob.backward()  # grad-safe: no error on an empty rollout


# --- shrink policy --------------------------------------------------------------------------------------------


def test_shrink_sample_shapes_and_cells_are_submodules() -> None:
    policy = shrink()
    sample = policy.sample(unit_features(5), gen(0))
    assert sample.actions.shape == (5,) and sample.actions.dtype == torch.long
    assert int(sample.actions.min()) >= 0 and int(sample.actions.max()) < CHOICES
    assert sample.log_prob.shape == () and sample.log_prob.requires_grad
    # two LSTMCells (4 tensors each) and the head (2) are all trainable parameters
    names = {name for name, _ in policy.named_parameters()}
    assert len(names) == 10
    assert {f"cells.{i}.weight_ih" for i in range(2)} <= names
    assert {f"cells.{i}.weight_hh" for i in range(2)} <= names


def test_shrink_log_prob_matches_sample_and_hand_unrolled_cells() -> None:
    policy = shrink()
    features = unit_features(8)
    sample = policy.sample(features, gen(3))
    log_prob, entropy = policy.log_prob(features, sample.actions)
    torch.testing.assert_close(log_prob, sample.log_prob)
    torch.testing.assert_close(entropy, sample.entropy)

    logp = F.log_softmax(reference_shrink_logits(policy, features, sample.actions), dim=-1).detach()  # (T, K)
    by_hand = sum(float(logp[t, int(sample.actions[t])]) for t in range(8))
    assert sample.log_prob.item() == pytest.approx(by_hand, abs=1e-5)
    assert sample.entropy.item() == pytest.approx(-float((logp.exp() * logp).sum()), abs=1e-5)


def test_shrink_feeds_back_the_previous_choice() -> None:
    policy = shrink()
    features = unit_features(3)
    a = policy(features, torch.tensor([0, 1, 2]))
    b = policy(features, torch.tensor([3, 1, 2]))
    torch.testing.assert_close(a[0], b[0])  # step 0 has not seen any choice yet
    assert not torch.allclose(a[1], b[1])  # step 1 sees choice 0


def test_shrink_empty_sequence() -> None:
    policy = shrink()
    sample = policy.sample(torch.zeros(0, FEATURES), gen(0))
    assert sample.actions.shape == (0,) and sample.actions.dtype == torch.long
    assert sample.log_prob.item() == 0.0 and sample.entropy.item() == 0.0
    assert sample.log_prob.requires_grad
    sample.log_prob.backward()
    log_prob, _ = policy.log_prob(torch.zeros(0, FEATURES), torch.zeros(0, dtype=torch.long))
    assert log_prob.item() == 0.0


def test_shrink_rejects_out_of_range_actions() -> None:
    with pytest.raises(ValueError, match="ratio indices"):
        shrink().log_prob(unit_features(2), torch.tensor([0, CHOICES]))


# --- both -----------------------------------------------------------------------------------------------------


def test_seeded_sampling_is_reproducible_and_seeds_differ() -> None:
    features = unit_features(24)
    removable = torch.ones(24, dtype=torch.bool)
    r, s = removal(), shrink()
    torch.testing.assert_close(
        r.sample(features, removable, gen(5)).actions, r.sample(features, removable, gen(5)).actions
    )
    torch.testing.assert_close(s.sample(features, gen(5)).actions, s.sample(features, gen(5)).actions)
    assert not torch.equal(r.sample(features, removable, gen(5)).actions, r.sample(features, removable, gen(6)).actions)
    assert not torch.equal(s.sample(features, gen(5)).actions, s.sample(features, gen(6)).actions)


def test_policies_rebuild_from_config_and_state_dict() -> None:
    features = unit_features(5)
    r = removal(init_keep_prob=0.6)
    rebuilt_r = RemovalPolicy(**r.config)
    rebuilt_r.load_state_dict(r.state_dict())
    torch.testing.assert_close(rebuilt_r(features), r(features))
    assert rebuilt_r.config == {"feature_dim": FEATURES, "hidden": 30, "layers": 2, "init_keep_prob": 0.6}

    s = shrink()
    rebuilt_s = ShrinkPolicy(**s.config)
    rebuilt_s.load_state_dict(s.state_dict())
    actions = torch.tensor([0, 3, 1, 2, 2])
    torch.testing.assert_close(rebuilt_s(features, actions), s(features, actions))


def test_policies_read_any_number_of_units() -> None:
    """Teacher-agnostic: one policy runs on sequences of any length with the same feature schema."""
    r, s = removal(), shrink()
    for num_units in (1, 4, 13):
        features = unit_features(num_units)
        assert r.sample(features, torch.ones(num_units, dtype=torch.bool), gen(0)).actions.shape == (num_units,)
        assert s.sample(features, gen(0)).actions.shape == (num_units,)
