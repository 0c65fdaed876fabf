"""The process pool hands its workers the teacher's training logits once, in shared memory: they never read the
disk cache (proved by spoiling the cache after the pool has taken the logits)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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

    shared = ProcessExecutor(1, threads_per_worker=1)
    spoiled = ProcessExecutor(1, threads_per_worker=1)
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
