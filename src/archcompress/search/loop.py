"""The search loop shared by ``compress`` and the benchmarks: propose, evaluate, observe, until the budget is spent.

The budget counts *distinct* candidates: a search that proposes a candidate it has already seen (a policy
that has converged, a duplicate rollout) gets its stored result back at no cost, and that proposal does not
use up an evaluation. A resumed run replays the same proposals, so it stops at the same point.
"""

from __future__ import annotations

from collections.abc import Callable

from archcompress.evaluate import Evaluator, Result
from archcompress.search.base import Search

# A search that keeps proposing candidates it has seen is stopped after this many proposals per evaluation.
MAX_PROPOSALS_PER_EVALUATION = 20


def run_search(
    search: Search,
    evaluator: Evaluator,
    budget: int,
    *,
    batch: int | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_update: Callable[[list[Result]], None] | None = None,
) -> list[Result]:
    """Every result, in proposal order (duplicates included), once ``budget`` distinct candidates are evaluated.

    ``batch`` proposals are evaluated together (in parallel on a parallel executor); it defaults to the
    search's ``batch_size`` (N2N: rollouts per policy update), else 1. ``on_result`` is called for each
    result as it arrives, ``on_update`` after the search has observed a batch. The loop also ends when the
    search proposes nothing (a sweep that is exhausted) or keeps proposing only candidates it has seen.
    """
    size: int = batch or int(getattr(search, "batch_size", 1))
    results: list[Result] = []
    seen: set[str] = set()
    observed: dict[str, int] = {}  # the rung of each candidate's result the search was given
    revise = getattr(search, "revise", None)
    while len(seen) < budget and len(results) < budget * MAX_PROPOSALS_PER_EVALUATION:
        proposals = search.propose(min(size, budget - len(seen)))
        if not proposals:
            break
        batch_results = evaluator.evaluate_many(proposals, on_result=on_result)
        search.observe(batch_results)
        if revise is not None:  # promotions of candidates from earlier batches
            revised = _promoted_since(evaluator, observed)
            if revised:
                revise(revised)
        observed.update((r.candidate_hash, r.rung) for r in batch_results)
        results.extend(batch_results)
        seen.update(r.candidate_hash for r in batch_results)
        if on_update:
            on_update(batch_results)
    return results


def _promoted_since(evaluator: Evaluator, observed: dict[str, int]) -> list[Result]:
    """Results at a higher rung than the search was given, of candidates it observed; ``observed`` is updated."""
    revised = []
    for digest, rung in observed.items():
        best = evaluator.best_known(digest)
        if best.rung > rung:
            revised.append(best)
    observed.update((r.candidate_hash, r.rung) for r in revised)
    return revised
