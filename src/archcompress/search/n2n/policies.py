"""The two recurrent policies of N2N learning (Ashok et al., ICLR 2018): layer removal and layer shrinkage.

Both read only a sequence of per-unit feature vectors of a fixed length F, never the teacher itself, so a policy
trained on one teacher runs unchanged on another with the same feature schema (transfer). Their constructor
arguments are kept in ``config`` so a saved policy is rebuilt with ``Policy(**config)`` plus its state_dict.

All sampling goes through an explicit ``torch.Generator``: a seeded run is reproducible.

Each policy has a softmax ``temperature`` (1 unless set; not saved): its logits are divided by it before they
are sampled and scored, so a policy loaded from another teacher can be softened while it adapts (transfer).

Log-probabilities and entropies are sums over the decisions of one rollout (the log-probability and entropy of
the whole action sequence under the factorised distribution); units without a decision contribute nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KEEP = 1  # index of the "keep" logit of the removal policy
REMOVE = 0


@dataclass(frozen=True)
class PolicySample:
    """One rollout of a policy: its actions, and their log-probability and entropy (scalars with grad)."""

    actions: Tensor  # (T,) long
    log_prob: Tensor  # () sum over the decisions actually made
    entropy: Tensor  # () sum of the per-decision entropies


def _check_features(features: Tensor, feature_dim: int) -> None:
    """Raise if ``features`` is not a (T, feature_dim) matrix."""
    if features.dim() != 2 or features.shape[1] != feature_dim:
        raise ValueError(f"expected unit features of shape (T, {feature_dim}), got {tuple(features.shape)}")


def _draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One categorical draw per row of ``probs`` (N, K) -> (N,) long, on ``probs``' device."""
    device = generator.device if generator is not None else probs.device
    draws = torch.multinomial(probs.detach().to(device), 1, generator=generator)  # (N, 1)
    return draws.squeeze(1).to(probs.device)


def _zero_with_grad(module: nn.Module) -> Tensor:
    """A scalar 0 attached to the module's graph, so ``backward`` through an empty rollout is a no-op."""
    return torch.stack([p.sum() for p in module.parameters()]).sum() * 0.0


class RemovalPolicy(nn.Module):
    """Bidirectional LSTM over the units -> an independent keep/remove decision per unit (stage 1)."""

    def __init__(self, feature_dim: int, hidden: int = 30, layers: int = 2, init_keep_prob: float = 0.5) -> None:
        """Build the policy; ``init_keep_prob`` sets the head's bias so P(keep) starts near that value."""
        super().__init__()
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"init_keep_prob must lie strictly between 0 and 1, got {init_keep_prob}")
        self.config: dict[str, Any] = {
            "feature_dim": feature_dim,
            "hidden": hidden,
            "layers": layers,
            "init_keep_prob": init_keep_prob,
        }
        self.feature_dim = feature_dim
        self.temperature = 1.0
        self.lstm = nn.LSTM(feature_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, 2)
        with torch.no_grad():
            # logit(keep) - logit(remove) = log(p / (1 - p)); the weights stay at their default (small) init
            self.head.bias.copy_(torch.tensor([0.0, math.log(init_keep_prob / (1.0 - init_keep_prob))]))

    def forward(self, features: Tensor) -> Tensor:
        """Per-unit logits (T, 2) for unit features (T, F), divided by the temperature; column 1 is "keep"."""
        _check_features(features, self.feature_dim)
        if features.shape[0] == 0:
            return self.head.bias.expand(0, 2)
        x = features.to(self.head.weight.dtype).unsqueeze(0)  # (1, T, F)
        out, _ = self.lstm(x)  # (1, T, 2H): forward and backward states concatenated
        return self.head(out.squeeze(0)) / self.temperature  # (T, 2)

    def _score(self, logits: Tensor, removable: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Summed log-probability and entropy of ``actions`` over the removable units only."""
        logp = F.log_softmax(logits, dim=-1)  # (T, 2)
        picked = logp.gather(1, actions.unsqueeze(1)).squeeze(1)  # (T,)
        ent = -(logp.exp() * logp).sum(dim=-1)  # (T,)
        mask = removable.to(logp.dtype)
        log_prob = (picked * mask).sum() if len(actions) else _zero_with_grad(self)
        entropy = (ent * mask).sum() if len(actions) else _zero_with_grad(self)
        return log_prob, entropy

    def _check_mask(self, features: Tensor, removable: Tensor) -> Tensor:
        """Validate the removable mask (T,) against the features and return it as bool on their device."""
        if removable.shape != (features.shape[0],):
            raise ValueError(f"removable mask must have shape ({features.shape[0]},), got {tuple(removable.shape)}")
        return removable.to(device=features.device, dtype=torch.bool)

    def sample(self, features: Tensor, removable: Tensor, generator: torch.Generator | None = None) -> PolicySample:
        """Draw keep (1) / remove (0) per unit; units that are not removable are always kept."""
        removable = self._check_mask(features, removable)
        logits = self(features)  # (T, 2)
        drawn = _draw(F.softmax(logits, dim=-1), generator) if len(logits) else logits.new_zeros(0, dtype=torch.long)
        actions = torch.where(removable, drawn, torch.full_like(drawn, KEEP))  # (T,)
        log_prob, entropy = self._score(logits, removable, actions)
        return PolicySample(actions=actions, log_prob=log_prob, entropy=entropy)

    def log_prob(self, features: Tensor, removable: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability and entropy of given actions (T,), as ``sample`` computed them."""
        removable = self._check_mask(features, removable)
        actions = actions.to(device=features.device, dtype=torch.long)
        if actions.shape != removable.shape:
            raise ValueError(f"actions must have shape {tuple(removable.shape)}, got {tuple(actions.shape)}")
        if bool((~removable & (actions != KEEP)).any()):
            raise ValueError("actions remove a unit that is not removable; such units must be kept (action 1)")
        return self._score(self(features), removable, actions)


def expected_kept(policy: RemovalPolicy, features: Tensor, removable: Tensor) -> float:
    """The number of removable units ``policy`` keeps on average (at temperature 1) for these unit features."""
    with torch.no_grad():
        logits = policy(features) * policy.temperature  # (T, 2)
        return float(F.softmax(logits, dim=-1)[:, KEEP][removable.to(torch.bool)].sum())


def shift_to_keep(policy: RemovalPolicy, features: Tensor, removable: Tensor, count: float) -> float:
    """Shift ``policy``'s keep logit so that it keeps ``count`` of the removable units on average; the shift.

    Bisection on a bias added to every unit's keep-minus-remove logit (the sum of the keep probabilities grows
    monotonically with it); ``count`` is clipped to half a unit inside ``[0, removable units]``.
    """
    mask = removable.to(torch.bool)
    units = int(mask.sum())
    if units == 0:
        return 0.0
    with torch.no_grad():
        logits = policy(features) * policy.temperature
        margin = (logits[:, KEEP] - logits[:, REMOVE])[mask]  # (R,)
        wanted = min(max(count, 0.5), units - 0.5)
        low, high = -30.0, 30.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if float(torch.sigmoid(margin + middle).sum()) < wanted else (low, middle)
        shift = (low + high) / 2
        policy.head.bias[KEEP] += shift
    return shift


class ShrinkPolicy(nn.Module):
    """Autoregressive two-layer LSTM choosing one ratio index per unit, fed its previous choice (stage 2)."""

    def __init__(self, feature_dim: int, num_choices: int, hidden: int = 30) -> None:
        """Build the policy over ``num_choices`` ratio choices (indices into the caller's ratio set)."""
        super().__init__()
        if num_choices < 1:
            raise ValueError(f"num_choices must be at least 1, got {num_choices}")
        self.config: dict[str, Any] = {"feature_dim": feature_dim, "num_choices": num_choices, "hidden": hidden}
        self.feature_dim = feature_dim
        self.num_choices = num_choices
        self.hidden = hidden
        self.temperature = 1.0
        # a ModuleList, not a Python list: the authors' plain list hid the cells from .parameters() (never trained)
        self.cells = nn.ModuleList([nn.LSTMCell(feature_dim + num_choices, hidden), nn.LSTMCell(hidden, hidden)])
        self.head = nn.Linear(hidden, num_choices)

    def _unroll(
        self, features: Tensor, actions: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Run the cells over the units, sampling (``actions`` None) or teacher-forcing -> (actions, logits)."""
        _check_features(features, self.feature_dim)
        weight = self.head.weight
        x = features.to(device=weight.device, dtype=weight.dtype)  # (T, F)
        num_units = x.shape[0]
        states = [(weight.new_zeros(1, self.hidden), weight.new_zeros(1, self.hidden)) for _ in self.cells]
        prev = weight.new_zeros(1, self.num_choices)  # one-hot of the previous choice; zeros before the first
        chosen: list[Tensor] = []
        logits: list[Tensor] = []
        for t in range(num_units):
            inp = torch.cat([x[t : t + 1], prev], dim=1)  # (1, F + K)
            for i, cell in enumerate(self.cells):
                states[i] = cell(inp, states[i])
                inp = states[i][0]  # (1, H)
            step_logits = self.head(inp) / self.temperature  # (1, K)
            choice = _draw(F.softmax(step_logits, dim=-1), generator) if actions is None else actions[t : t + 1]
            chosen.append(choice)
            logits.append(step_logits)
            prev = F.one_hot(choice, self.num_choices).to(weight.dtype)  # (1, K)
        if num_units == 0:
            return weight.new_zeros(0, dtype=torch.long), weight.new_zeros(0, self.num_choices)
        return torch.cat(chosen), torch.cat(logits)  # (T,), (T, K)

    def _score(self, logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Summed log-probability and entropy of ``actions`` (T,) under ``logits`` (T, K)."""
        if len(actions) == 0:
            return _zero_with_grad(self), _zero_with_grad(self)
        logp = F.log_softmax(logits, dim=-1)  # (T, K)
        log_prob = logp.gather(1, actions.unsqueeze(1)).sum()
        entropy = -(logp.exp() * logp).sum()
        return log_prob, entropy

    def forward(self, features: Tensor, actions: Tensor) -> Tensor:
        """Logits (T, K), divided by the temperature, with the given previous choices fed back (teacher forcing)."""
        return self._unroll(features, actions.to(device=self.head.weight.device, dtype=torch.long), None)[1]

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> PolicySample:
        """Draw one ratio index per unit, each step seeing the choice made at the step before."""
        actions, logits = self._unroll(features, None, generator)
        log_prob, entropy = self._score(logits, actions)
        return PolicySample(actions=actions, log_prob=log_prob, entropy=entropy)

    def log_prob(self, features: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability and entropy of given ratio indices (T,), as ``sample`` computed them."""
        actions = actions.to(device=self.head.weight.device, dtype=torch.long)
        if actions.shape != (features.shape[0],):
            raise ValueError(f"actions must have shape ({features.shape[0]},), got {tuple(actions.shape)}")
        if len(actions) and (int(actions.min()) < 0 or int(actions.max()) >= self.num_choices):
            raise ValueError(f"actions must be ratio indices in [0, {self.num_choices}), got {actions.tolist()}")
        return self._score(self(features, actions), actions)
