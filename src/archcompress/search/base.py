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
        """The results of the last proposals, in the same order (each at the best fidelity known then)."""
        ...


class RevisingSearch(Search, Protocol):
    """A search that also takes later, higher-fidelity results of candidates it observed earlier (multi-fidelity
    evaluation promotes a candidate after its first result; see :mod:`archcompress.evaluate.rungs`)."""

    def revise(self, results: list[Result]) -> None:
        """Higher-rung results of candidates observed before."""
        ...
