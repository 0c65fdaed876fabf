"""The process pool hands its workers the teacher's training logits once: spawned workers get them in shared
memory and never read the disk cache (proved by spoiling the cache after the pool has taken the logits); forked
workers inherit the parent's whole set-up. When a pool may fork."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from archcompress.evaluate import Budget, EvalContext, Evaluator, ResultStore, worker_state
from archcompress.evaluate.executors import InlineExecutor, ProcessExecutor


def spoil_cache(home: Path) -> None:
    """Replace every cached logits file with zeros of the same shape (still a valid cache entry)."""
    files = list((home / "logits").glob("logits-*.pt"))
    assert files
    for path in files:
        torch.save(torch.zeros_like(torch.load(path, weights_only=True)), path)


def test_process_workers_train_on_the_shared_logits_not_the_disk_cache(
    make_context: Callable[..., EvalContext], home: Path, tmp_path: Path
) -> None:
    context = make_context(Budget(epochs=2, subset=400))
    candidate = worker_state(context).space.uniform_candidate(1.0)  # the teacher's weights: zero targets ruin them
    inline = Evaluator(context, ResultStore(tmp_path / "inline.sqlite"), InlineExecutor()).evaluate(candidate)

    shared = ProcessExecutor(1, threads_per_worker=1, start_method="spawn")
    spoiled = ProcessExecutor(1, threads_per_worker=1, start_method="spawn")
    try:
        shared._get_pool(context)  # takes the logits into shared memory now
        spoil_cache(home)
        from_shared = Evaluator(context, ResultStore(tmp_path / "a.sqlite"), shared).evaluate(candidate)
        # control: a pool started after the spoiling trains on the zeros, so the spoiling is visible
        from_spoiled = Evaluator(context, ResultStore(tmp_path / "b.sqlite"), spoiled).evaluate(candidate)
    finally:
        shared.close()
        spoiled.close()
    assert inline.ok and from_shared.ok and from_spoiled.ok
    assert from_shared.val_accuracy == inline.val_accuracy
    assert from_spoiled.val_accuracy != inline.val_accuracy


def test_forked_workers_train_on_the_parents_set_up_without_reading_the_disk(
    make_context: Callable[..., EvalContext], home: Path, tmp_path: Path
) -> None:
    context = make_context(Budget(epochs=2, subset=400))
    candidate = worker_state(context).space.uniform_candidate(1.0)
    inline = Evaluator(context, ResultStore(tmp_path / "inline.sqlite"), InlineExecutor()).evaluate(candidate)
    spoil_cache(home)  # forked workers never look at it: the parent's set-up already holds the logits
    forked = ProcessExecutor(2, threads_per_worker=1)
    try:
        results = Evaluator(context, ResultStore(tmp_path / "f.sqlite"), forked).evaluate_many(
            [candidate, worker_state(context).space.uniform_candidate(0.5)]
        )
    finally:
        forked.close()
    assert forked.start_method == "fork"
    assert all(result.ok for result in results)
    assert results[0].val_accuracy == inline.val_accuracy


@pytest.mark.parametrize(
    ("executor", "threads", "forks"),
    [
        (dict(workers=2, threads_per_worker=1), None, True),
        (dict(workers=2, threads_per_worker=1), 1, True),
        (dict(workers=2, threads_per_worker=2), None, False),  # OpenMP with 2 threads hangs in a forked child
        (dict(workers=2, threads_per_worker=1), 2, False),  # --threads 2 would give each job 2 threads
    ],
)
def test_a_pool_forks_only_single_threaded_cpu_workers(
    make_context: Callable[..., EvalContext], executor: dict[str, int], threads: int | None, forks: bool
) -> None:
    context = replace(make_context(), threads=threads)
    assert ProcessExecutor(**executor).can_fork(context) is forks
    assert ProcessExecutor(**executor, device="cuda:0").can_fork(context) is False
