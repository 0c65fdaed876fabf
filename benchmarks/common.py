"""Helpers shared by the search benchmarks: a teacher trained on the spot, its evaluator, a search loop."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions
from archcompress.distill import TrainConfig, evaluate_accuracy
from archcompress.evaluate import Budget, EvalContext, Evaluator, Result, worker_state
from archcompress.evaluate.worker import WorkerState
from archcompress.search import Search
from archcompress.search.loop import run_search
from archcompress.search.n2n.search import TeacherStats


@dataclass
class Bench:
    """A teacher with its evaluation context, space and reward reference."""

    context: EvalContext
    state: WorkerState
    stats: TeacherStats


def digits_teacher(work: Path, model: str, width: float, budget: Budget, epochs: int = 15) -> Bench:
    """Train ``model`` at ``width`` on ``digits`` (no augmentation) and set up its evaluator context."""
    path = work / f"{model}-{width}.pt"
    print(f"training the teacher ({model} width {width}, digits, {epochs} epochs) ...")
    train_teacher(model, "digits", path, model_kwargs={"width": width}, train=TrainConfig(epochs=epochs, augment=False))
    sha = archcompress.load_teacher(path).sha256
    context = EvalContext(str(path), sha, "digits", DataOptions(), budget, str(work / "home" / "logits"))
    state = worker_state(context)
    accuracy = evaluate_accuracy(state.teacher.model, state.splits.val, torch.device("cpu"))
    cost = state.space.teacher_cost
    return Bench(context, state, TeacherStats(accuracy, cost.params, cost.macs))


def search_summary(search: Search, evaluator: Evaluator, evaluations: int, reward: Any) -> dict[str, Any]:
    """Run the library's search loop for ``evaluations`` distinct candidates; rewards and the best-so-far curve.

    Rewards are listed per distinct candidate in the order first seen (a repeated proposal is free).
    """
    started = time.perf_counter()
    results = run_search(search, evaluator, evaluations, batch=getattr(search, "batch_size", 5))
    first: dict[str, Result] = {}
    for result in results:
        first.setdefault(result.candidate_hash, result)
    rewards = [reward(r) for r in first.values()]
    best_so_far = [max(rewards[: i + 1]) for i in range(len(rewards))]
    return {
        "best_reward": max(rewards),
        "mean_last_50": statistics.fmean(rewards[-50:]),
        "mean_first_50": statistics.fmean(rewards[:50]),
        "mean_first_25": statistics.fmean(rewards[:25]),
        "invalid_or_failed": sum(r == -1.0 for r in rewards),
        "best_reward_curve": best_so_far,
        "proposals": len(results),
        "distinct": len(first),
        "restarts": getattr(search, "restarts", None),  # N2N: stage-2 restarts after convergence
        "seconds": time.perf_counter() - started,
    }
