"""Baseline searches. ``random``: uniformly random valid candidates of the same space, same budget."""

from __future__ import annotations

import numpy as np

from archcompress.evaluate import Result
from archcompress.space import Candidate, CompressionSpace


class RandomSearch:
    """Random valid candidates (keep flags ~ Bernoulli(keep_prob), ratios uniform over the ratio set).

    Proposals are drawn from a seeded generator, so a resumed run proposes the same candidates again and
    finds the finished ones in the store. Duplicates (by canonical hash) are skipped when possible.
    """

    name = "random"

    def __init__(self, space: CompressionSpace, seed: int, keep_prob: float = 0.5, max_redraws: int = 50) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.keep_prob = keep_prob
        self.max_redraws = max_redraws
        self._seen: set[str] = set()

    def propose(self, count: int) -> list[Candidate]:
        proposals: list[Candidate] = []
        for _ in range(count):
            for _ in range(self.max_redraws):
                candidate = self.space.sample(self.rng, keep_prob=self.keep_prob)
                digest = self.space.candidate_hash(candidate)
                if digest not in self._seen:
                    break
            self._seen.add(digest)
            proposals.append(candidate)
        return proposals

    def observe(self, results: list[Result]) -> None:
        """Random search learns nothing from results."""
