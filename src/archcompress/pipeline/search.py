"""Driving a method's search: the loop, the live status (best candidate meeting the constraints), log.txt
and TensorBoard."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from archcompress.constraints import Constraints
from archcompress.evaluate import Evaluator, Result
from archcompress.search import Search, TeacherStats, meets
from archcompress.search.loop import run_search

log = logging.getLogger("archcompress")


@dataclass
class SearchStatus:
    """What the live display and TensorBoard show after each evaluation."""

    teacher_params: int
    done: int  # distinct candidates evaluated
    last: Result | None
    best: Result | None  # the best-reward trained candidate that meets every constraint (None: none yet)
    best_reward: float
    constraints: Constraints = field(default_factory=Constraints)
    best_any: Result | None = None  # the best-reward trained candidate, constraints or not


def drive_search(
    search: Search,
    evaluator: Evaluator,
    budget: int,
    *,
    teacher: TeacherStats,
    constraints: Constraints,
    objective: str,
    batch: int,
    tensorboard: Path,
    on_progress: Callable[[SearchStatus], None] | None,
) -> list[Result]:
    """Run the search loop (:func:`~archcompress.search.loop.run_search`) until the budget is spent.

    Every evaluation and every policy update is logged to ``log.txt`` and to TensorBoard event files.
    """
    from torch.utils.tensorboard import SummaryWriter

    seen: set[str] = set()
    status = SearchStatus(teacher.params, 0, None, None, -math.inf, constraints)
    best_any_reward = -math.inf
    started = time.perf_counter()
    writer = SummaryWriter(str(tensorboard))

    def record(result: Result) -> None:
        nonlocal best_any_reward
        log.info(
            "candidate %s: %s, val acc %s, params %s%s", result.candidate_hash, result.status,
            result.val_accuracy, result.params, " (from store)" if result.from_store else "",
        )  # fmt: skip
        reward = teacher.reward(result, objective)
        seen.add(result.candidate_hash)
        status.done = len(seen)  # distinct candidates, as the budget counts them
        status.last = result
        if result.ok and reward > best_any_reward:
            status.best_any, best_any_reward = result, reward
        if result.ok and reward > status.best_reward and meets(result, constraints, teacher.params):
            status.best, status.best_reward = result, reward
        step = status.done
        writer.add_scalar("search/reward", reward, step)
        if status.best is not None:
            writer.add_scalar("search/best_reward", status.best_reward, step)
            writer.add_scalar("search/best_reward_vs_seconds", status.best_reward, int(time.perf_counter() - started))
        if result.ok and result.params:
            writer.add_scalar("search/val_accuracy", result.val_accuracy or 0.0, step)
            writer.add_scalar("search/compression", teacher.params / result.params, step)
        if on_progress:
            on_progress(status)

    def updated(batch_results: list[Result]) -> None:
        for name, value in (getattr(search, "history", None) or [{}])[-1].items():
            if name != "iteration":
                writer.add_scalar(f"policy/{name}", value, status.done)

    try:
        return run_search(search, evaluator, budget, batch=batch, on_result=record, on_update=updated)
    finally:
        writer.close()
