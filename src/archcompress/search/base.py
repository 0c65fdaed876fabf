"""The search protocol: a search proposes candidates and observes their results, nothing else.

Searches never see a training loop, so they can be unit-tested with a fake evaluator.
"""

from __future__ import annotations

from typing import Protocol

from archcompress.evaluate import Result
from archcompress.space import Candidate


class Search(Protocol):
    """A compression search method."""

    name: str

    def propose(self, count: int) -> list[Candidate]:
        """Up to ``count`` candidates to evaluate next (evaluated together, in parallel)."""
        ...

    def observe(self, results: list[Result]) -> None:
        """The results of the last proposals, in the same order."""
        ...
