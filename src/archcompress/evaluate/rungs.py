"""Multi-fidelity evaluation: the rung ladder that decides promotions (asynchronous successive halving, as in
ASHA), and the checkpoints that let a promoted candidate continue training instead of starting again.

A candidate is first scored after ``rungs[0]`` epochs of a run whose learning-rate schedule spans the last
rung. Whenever a result arrives, every candidate in the top ``promote`` fraction of its rung (among the
candidates eligible for promotion, e.g. those that meet the size limits) that has not gone up yet is promoted:
it trains on from its saved weights, optimiser and schedule to the next rung's epochs. No rung waits for a
full generation, so parallel workers never idle while a promotion is possible.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archcompress.distill import TrainState
from archcompress.runtime import atomic_open

DEFAULT_PROMOTE = 1 / 3  # ASHA's reduction factor 3: the top third of each rung goes up


@dataclass
class Ladder:
    """Each rung's scores, by candidate hash, and who has been promoted (in this search)."""

    top_rung: int
    promote: float = DEFAULT_PROMOTE
    scores: list[dict[str, float | None]] = field(default_factory=list)  # per rung: hash -> score (None: ineligible)
    promoted: list[set[str]] = field(default_factory=list)  # per rung: hashes sent to the next rung

    def __post_init__(self) -> None:
        self.scores = [{} for _ in range(self.top_rung + 1)]
        self.promoted = [set() for _ in range(self.top_rung + 1)]

    def add(self, rung: int, digest: str, score: float | None) -> None:
        """Record a result at ``rung``; a candidate seen at a rung was promoted from every rung below it."""
        self.scores[rung][digest] = score
        for lower in range(rung):
            self.promoted[lower].add(digest)

    def reached(self, digest: str) -> int:
        """The highest rung ``digest`` has a result at (-1: none)."""
        return max((rung for rung, scores in enumerate(self.scores) if digest in scores), default=-1)

    def promotions(self) -> list[tuple[str, int]]:
        """``(hash, next rung)`` for every candidate that is now in the top fraction of its rung and not yet up.

        The top fraction is ``floor(promote * eligible results at the rung)``: with fewer than ``1 / promote``
        eligible results nothing goes up yet. The best scores go first.
        """
        chosen = []
        for rung in range(self.top_rung):
            eligible = [(score, digest) for digest, score in self.scores[rung].items() if score is not None]
            quota = math.floor(self.promote * len(eligible) + 1e-9)
            for _, digest in sorted(eligible, reverse=True)[:quota]:
                if digest not in self.promoted[rung]:
                    self.promoted[rung].add(digest)
                    chosen.append((digest, rung + 1))
        return chosen

    def counts(self) -> list[int]:
        """How many candidates have a result at each rung."""
        return [len(scores) for scores in self.scores]


def checkpoint_path(directory: str | Path, fingerprint: str, seed: int, digest: str, rung: int) -> Path:
    """Where the state of candidate ``digest`` after rung ``rung`` is kept (one file per evaluation context)."""
    name = hashlib.sha256(f"{fingerprint}|{seed}|{digest}".encode()).hexdigest()[:24]
    return Path(directory) / f"{name}-rung{rung}.pt"


def save_checkpoint(path: Path, module: nn.Module, state: TrainState) -> None:
    """The student's weights and its run's optimiser and schedule, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": module.state_dict(), "epoch": state.epoch, "step": state.step,
               "optimizer": state.optimizer, "scheduler": state.scheduler}  # fmt: skip
    with atomic_open(path) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: Path, module: nn.Module) -> TrainState | None:
    """Load the weights saved at ``path`` into ``module`` and return the run's state; None when there is no
    usable checkpoint (never saved, removed, from another machine of a cluster, or damaged): train from the start."""
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(payload["model"])
        return TrainState(int(payload["epoch"]), int(payload["step"]), payload["optimizer"], payload["scheduler"])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError):
        return None


def remove_checkpoints(paths: Iterable[Path]) -> None:
    """Delete checkpoints that are no longer needed (missing ones are fine)."""
    for path in paths:
        path.unlink(missing_ok=True)
