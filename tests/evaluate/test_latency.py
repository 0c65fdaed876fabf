"""``--objective latency``: the CPU latency measurement, its place in the store, and the N2N reward on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from archcompress.evaluate import EvalContext, Evaluator, ResultStore
from archcompress.evaluate.executors import InlineExecutor
from archcompress.evaluate.latency import measure_latency_ms


def test_latency_is_positive_and_leaves_module_and_threads_as_they_were() -> None:
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    module(torch.zeros(1, 1, 8, 8))
    module.train()
    threads = torch.get_num_threads()
    latency = measure_latency_ms(module, (1, 8, 8), repeats=3, warmup=1)
    assert latency > 0
    assert module.training and torch.get_num_threads() == threads


def test_evaluator_measures_latency_and_fills_it_in_for_results_stored_without_it(
    make_context: Callable[..., EvalContext], tmp_path: Path
) -> None:
    context = make_context()
    store = ResultStore(tmp_path / "store.sqlite")
    candidate = Evaluator(context, store, InlineExecutor()).space.uniform_candidate(0.5)
    plain = Evaluator(context, store, InlineExecutor()).evaluate(candidate)
    assert plain.ok and plain.latency_ms is None  # not asked for: not measured

    timed = Evaluator(replace(context, latency=True), store, InlineExecutor())
    from_store = timed.evaluate(candidate)
    assert from_store.from_store and from_store.latency_ms is not None and from_store.latency_ms > 0
    assert store.get(timed.key(from_store.candidate_hash)).extra["latency_ms"] == from_store.latency_ms  # type: ignore[union-attr]

    fresh = timed.evaluate(timed.space.uniform_candidate(0.25))
    assert not fresh.from_store and fresh.latency_ms is not None and fresh.latency_ms > 0
    assert store.get(timed.key(fresh.candidate_hash)).extra["latency_ms"] == fresh.latency_ms  # type: ignore[union-attr]


def test_n2n_reward_on_latency_uses_the_latency_ratio() -> None:
    from archcompress.errors import ArchcompressError
    from archcompress.evaluate import Result
    from archcompress.models import create_model
    from archcompress.search.n2n.search import N2NOptions, N2NSearch, TeacherStats
    from archcompress.space import CompressionSpace

    space = CompressionSpace.from_model(create_model("lenet5", (1, 28, 28), 10).eval(), (1, 28, 28))
    cost = space.teacher_cost
    options = N2NOptions(objective="latency")
    with pytest.raises(ArchcompressError, match="latency"):
        N2NSearch(space, options, TeacherStats(0.9, cost.params, cost.macs), budget=10, seed=0)
    search = N2NSearch(space, options, TeacherStats(0.9, cost.params, cost.macs, latency_ms=4.0), budget=10, seed=0)
    candidate = space.uniform_candidate(0.5)
    result = Result(candidate, "h", "ok", 0.45, cost.params, cost.macs, 1.0, 0, False, latency_ms=1.0)
    c = 1 - 1.0 / 4.0  # params are the teacher's, yet latency is 4x lower: only latency counts
    assert search.reward(result) == pytest.approx(c * (2 - c) * 0.5)
    missing = replace(result, latency_ms=None)
    assert search.reward(missing) == -1.0
