"""REINFORCE: advantages and baseline on hand-computed numbers, gradients reach every weight, learning on toy
rewards in closed form, and an exact resume through ``torch.save`` / ``torch.load(weights_only=True)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from archcompress.search.n2n.policies import REMOVE, PolicySample, RemovalPolicy, ShrinkPolicy
from archcompress.search.n2n.reinforce import REMOVAL_LR, SHRINK_LR, Reinforce

FEATURES = 4
CHOICES = 5
ROLLOUTS = 5


class Scalar(nn.Module):
    """A one-parameter "policy" whose log-probabilities are ``c * theta``: gradients are easy to compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(()))


def grad_after_update(
    trainer: Reinforce, coefs: list[float], rewards: list[float], entropies: list[Tensor] | None = None
) -> tuple[float, dict[str, float]]:
    theta = trainer.policy.theta  # type: ignore[union-attr]
    stats = trainer.update([c * theta for c in coefs], rewards, entropies)
    assert theta.grad is not None
    return float(theta.grad), stats


# --- advantages and baseline ----------------------------------------------------------------------------------


def test_baseline_and_advantages_on_hand_computed_numbers() -> None:
    trainer = Reinforce(Scalar(), lr=0.1, baseline_decay=0.9)
    assert trainer.baseline is None

    # first batch: b starts at its mean reward 2, so A = (-1, 0, 1); dloss/dtheta = -(1/3) sum A_i c_i
    grad, stats = grad_after_update(trainer, [1.0, 2.0, 5.0], [1.0, 2.0, 3.0])
    assert grad == pytest.approx(-(-1 * 1.0 + 0 * 2.0 + 1 * 5.0) / 3)
    assert stats["baseline"] == pytest.approx(2.0)
    assert trainer.baseline == pytest.approx(2.0)  # 0.9 * 2 + 0.1 * 2

    # second batch uses the old b = 2: A = (2, 4); then b = 0.9 * 2 + 0.1 * 5 = 2.3
    grad, stats = grad_after_update(trainer, [1.0, -1.0], [4.0, 6.0])
    assert grad == pytest.approx(-(2 * 1.0 + 4 * -1.0) / 2)
    assert stats["baseline"] == pytest.approx(2.0)
    assert stats["mean_advantage"] == pytest.approx(3.0)
    assert stats["mean_reward"] == pytest.approx(5.0)
    assert stats["next_baseline"] == pytest.approx(2.3)
    assert trainer.baseline == pytest.approx(2.3)

    # third batch: A = 0 - 2.3; then b = 0.9 * 2.3 = 2.07
    grad, stats = grad_after_update(trainer, [2.0], [0.0])
    assert grad == pytest.approx(2.3 * 2.0)
    assert stats["grad_norm"] == pytest.approx(4.6)
    assert trainer.baseline == pytest.approx(2.07)
    assert trainer.updates == 3


def test_loss_value_and_entropy_bonus() -> None:
    trainer = Reinforce(Scalar(), lr=0.1, entropy_weight=0.5)
    theta = trainer.policy.theta  # type: ignore[union-attr]
    # A = (-1, 1) at theta = 0; entropies are (2 theta + 1, 4 theta + 3) so the bonus adds -0.5 * 3 to dloss/dtheta
    stats = trainer.update([theta * 1.0, theta * 3.0], [0.0, 2.0], [2 * theta + 1.0, 4 * theta + 3.0])
    assert stats["loss"] == pytest.approx(0.0 - 0.5 * (1.0 + 3.0) / 2)
    assert float(theta.grad) == pytest.approx(-(-1 * 1.0 + 1 * 3.0) / 2 - 0.5 * (2.0 + 4.0) / 2)  # type: ignore[arg-type]


def test_entropy_weight_needs_entropies_and_lengths_must_match() -> None:
    theta = Scalar().theta
    with pytest.raises(ValueError, match="entropies"):
        Reinforce(Scalar(), lr=0.1, entropy_weight=0.1).update([theta], [1.0])
    with pytest.raises(ValueError, match="one log-probability per reward"):
        Reinforce(Scalar(), lr=0.1).update([theta, theta], [1.0])
    with pytest.raises(ValueError, match="one log-probability per reward"):
        Reinforce(Scalar(), lr=0.1).update([], [])


def test_max_grad_norm_clips_but_reports_the_raw_norm() -> None:
    trainer = Reinforce(Scalar(), lr=0.1, max_grad_norm=0.5)
    grad, stats = grad_after_update(trainer, [10.0, -10.0], [0.0, 2.0])  # A = (-1, 1): grad 10
    assert stats["grad_norm"] == pytest.approx(10.0)
    assert abs(grad) == pytest.approx(0.5, rel=1e-4)


# --- gradients reach every weight -----------------------------------------------------------------------------


def features(num_units: int, seed: int = 0) -> Tensor:
    return torch.randn(num_units, FEATURES, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("which", ["removal", "shrink"])
def test_one_update_gives_every_parameter_a_gradient(which: str) -> None:
    torch.manual_seed(0)
    policy: nn.Module = RemovalPolicy(FEATURES) if which == "removal" else ShrinkPolicy(FEATURES, CHOICES)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    g = torch.Generator().manual_seed(0)
    x = features(6)
    samples: list[PolicySample] = [
        policy.sample(x, torch.ones(6, dtype=torch.bool), g) if which == "removal" else policy.sample(x, g)
        for _ in range(ROLLOUTS)
    ]
    stats = Reinforce(policy, lr=1e-2).update([s.log_prob for s in samples], [0.1, 0.9, 0.3, 0.5, 0.7])
    assert stats["grad_norm"] > 0
    # both LSTM layers and directions (removal), both cells (shrink) and the heads
    expected = 2 * 2 * 4 + 2 if which == "removal" else 2 * 4 + 2
    named = dict(policy.named_parameters())
    assert len(named) == expected
    for name, p in named.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"{name} got no gradient"
        assert not torch.equal(p.detach(), before[name]), f"{name} did not move"


# --- learning on toy rewards ----------------------------------------------------------------------------------


def train(
    policy: nn.Module, lr: float, rollout: Callable[[torch.Generator], tuple[Tensor, float]], seed: int, updates: int
) -> list[float]:
    """Run ``updates`` REINFORCE updates of ``ROLLOUTS`` rollouts; the mean reward of each update."""
    g = torch.Generator().manual_seed(seed)
    trainer = Reinforce(policy, lr)
    means = []
    for _ in range(updates):
        batch = [rollout(g) for _ in range(ROLLOUTS)]
        stats = trainer.update([lp for lp, _ in batch], [r for _, r in batch])
        means.append(stats["mean_reward"])
    return means


def gain(means: list[float]) -> float:
    return sum(means[-10:]) / 10 - sum(means[:10]) / 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_removal_policy_learns_which_units_to_remove(seed: int) -> None:
    # feature 0 says whether removing the unit is good; two units are fixed. Reward in [0, 1]: 0.5 plus half of
    # (fraction of good units removed - fraction of bad units removed); a coin-flip policy scores 0.5.
    good = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
    removable = torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    x = features(10, seed)
    x[:, 0] = good.float() * 2 - 1
    good_r, bad_r = good & removable, ~good & removable
    torch.manual_seed(seed)
    policy = RemovalPolicy(FEATURES)

    def rollout(g: torch.Generator) -> tuple[Tensor, float]:
        sample = policy.sample(x, removable, g)
        removed = sample.actions == REMOVE
        frac_good = float((removed & good_r).sum()) / float(good_r.sum())
        frac_bad = float((removed & bad_r).sum()) / float(bad_r.sum())
        return sample.log_prob, 0.5 + 0.5 * (frac_good - frac_bad)

    means = train(policy, REMOVAL_LR, rollout, seed, updates=100)
    assert gain(means) > 0.2, means
    assert sum(means[-10:]) / 10 > 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shrink_policy_learns_the_target_ratio_per_unit(seed: int) -> None:
    # feature 0 says whether the unit wants the largest or the smallest ratio; reward in [0, 1] is the mean
    # closeness 1 - |choice - target| / (K - 1); a uniform policy scores 0.5.
    high = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
    target = torch.where(high, CHOICES - 1, 0)
    x = features(8, seed)
    x[:, 0] = high.float() * 2 - 1
    torch.manual_seed(seed)
    policy = ShrinkPolicy(FEATURES, CHOICES)

    def rollout(g: torch.Generator) -> tuple[Tensor, float]:
        sample = policy.sample(x, g)
        closeness = 1 - (sample.actions - target).abs().float() / (CHOICES - 1)
        return sample.log_prob, float(closeness.mean())

    means = train(policy, SHRINK_LR, rollout, seed, updates=100)
    assert gain(means) > 0.2, means
    assert sum(means[-10:]) / 10 > 0.7


# --- resume ---------------------------------------------------------------------------------------------------


def test_state_dict_round_trip_resumes_exactly(tmp_path: Path) -> None:
    x = features(7)

    def step(trainer: Reinforce, g: torch.Generator) -> Tensor:
        policy: ShrinkPolicy = trainer.policy  # type: ignore[assignment]
        samples = [policy.sample(x, g) for _ in range(ROLLOUTS)]
        rewards = [float(s.actions.float().mean()) for s in samples]
        trainer.update([s.log_prob for s in samples], rewards, [s.entropy for s in samples])
        return torch.stack([s.actions for s in samples])

    torch.manual_seed(0)
    original = Reinforce(ShrinkPolicy(FEATURES, CHOICES), lr=1e-2, entropy_weight=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        step(original, g)
    torch.save(original.state_dict(), tmp_path / "trainer.pt")

    torch.manual_seed(1)  # a differently initialised policy, overwritten by the load
    resumed = Reinforce(ShrinkPolicy(FEATURES, CHOICES), lr=1e-2, entropy_weight=0.01)
    resumed.load_state_dict(torch.load(tmp_path / "trainer.pt", weights_only=True))
    assert resumed.baseline == original.baseline and resumed.updates == 3

    g_original = torch.Generator().manual_seed(7)
    g_resumed = torch.Generator().manual_seed(7)
    for _ in range(3):
        torch.testing.assert_close(step(original, g_original), step(resumed, g_resumed))
    assert resumed.baseline == original.baseline
    for (name, p), q in zip(original.policy.named_parameters(), resumed.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    # the optimiser moments came back too (a fresh Adam would have diverged from the original above)
    assert resumed.optimizer.state_dict()["state"][0]["step"] == original.optimizer.state_dict()["state"][0]["step"]
