"""REINFORCE with an exponential-moving-average baseline, the policy-gradient trainer of N2N learning.

Learning rates (Adam), measured on the closed-form toy rewards of ``tests/search/test_reinforce.py`` (100 updates
of 5 rollouts, no entropy bonus; "gain" = mean reward of the last 10 updates minus the first 10, on a [0, 1] scale):

- removal: ``REMOVAL_LR = 3e-3``, the authors' value [N2N code]. Its per-unit Bernoulli decisions are easy to
  credit; the gain was at least 0.35 on 30 of 30 seeds (1e-2 also learns, but 2 of 6 seeds plateaued at 0.9).
- shrink: ``SHRINK_LR = 5e-3``, below both the authors' 0.1 and the spec's "safer" 0.01. The autoregressive policy
  sees its previous choice, so noisy 5-rollout gradients (which Adam rescales to full-size steps) easily lock it
  onto repeating one ratio before the reward signal arrives (entropy collapse). Gains: 0.1 collapsed on 2 of 6
  seeds (gain < 0.1), 1e-2 on 1 of 30, 5e-3 on none of 30 (smallest gain 0.29). 1e-2 with ``entropy_weight=0.01``
  also held on 30 of 30 (smallest gain 0.38), if faster learning is wanted.

These are toy rewards: real rewards (distilled accuracy) are noisier, so treat the numbers as a sanity floor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

REMOVAL_LR = 3e-3
SHRINK_LR = 5e-3


class Reinforce:
    """REINFORCE on one policy: ``loss = -mean_i (R_i - b) log p_i - entropy_weight * mean_i H_i``, Adam step."""

    def __init__(
        self,
        policy: nn.Module,
        lr: float,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.0,
        max_grad_norm: float | None = None,
    ) -> None:
        """Train ``policy`` with Adam(``lr``); ``b`` decays by ``baseline_decay`` per update."""
        if not 0.0 <= baseline_decay <= 1.0:
            raise ValueError(f"baseline_decay must lie in [0, 1], got {baseline_decay}")
        self.policy = policy
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.max_grad_norm = max_grad_norm
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline: float | None = None  # set to the first batch's mean reward
        self.updates = 0

    def update(
        self, log_probs: list[Tensor], rewards: list[float], entropies: list[Tensor] | None = None
    ) -> dict[str, float]:
        """One policy-gradient step on a batch of rollouts.

        Args:
            log_probs: per rollout, the summed log-probability of its actions (a scalar with grad).
            rewards: per rollout, its reward.
            entropies: per rollout, its policy entropy; needed only when ``entropy_weight`` is not 0.

        Returns:
            ``loss``, ``baseline`` (the one the advantages used, i.e. before this update moved it),
            ``next_baseline``, ``mean_reward``, ``mean_advantage`` and ``grad_norm`` (before clipping).
        """
        n = len(rewards)
        if n == 0 or len(log_probs) != n:
            raise ValueError(f"need one log-probability per reward and at least one, got {len(log_probs)} and {n}")
        if entropies is not None and len(entropies) != n:
            raise ValueError(f"need one entropy per reward, got {len(entropies)} and {n}")
        if self.entropy_weight != 0.0 and entropies is None:
            raise ValueError("entropy_weight is not 0, so update() needs the rollouts' entropies")
        mean_reward = sum(rewards) / n
        baseline = mean_reward if self.baseline is None else self.baseline
        advantages = [float(r) - baseline for r in rewards]

        loss = -torch.stack([a * lp for a, lp in zip(advantages, log_probs, strict=True)]).sum() / n
        if self.entropy_weight != 0.0 and entropies is not None:
            loss = loss - self.entropy_weight * torch.stack(list(entropies)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.policy.parameters() if p.grad is not None]
        max_norm = math.inf if self.max_grad_norm is None else self.max_grad_norm
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        self.optimizer.step()

        # the baseline moves only after the advantages used the old one
        self.baseline = self.baseline_decay * baseline + (1.0 - self.baseline_decay) * mean_reward
        self.updates += 1
        return {
            "loss": float(loss.detach()),
            "baseline": baseline,
            "next_baseline": self.baseline,
            "mean_reward": mean_reward,
            "mean_advantage": sum(advantages) / n,
            "grad_norm": grad_norm,
        }

    def state_dict(self) -> dict[str, Any]:
        """Policy weights, optimiser state and baseline: tensors and primitives only (``weights_only`` loads)."""
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved, to resume training exactly where it stopped."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        baseline = state["baseline"]
        self.baseline = None if baseline is None else float(baseline)
        self.updates = int(state["updates"])
