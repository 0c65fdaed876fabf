"""The evaluator with each executor: results in input order, stored as they finish, never trained twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from archcompress.evaluate import (
    Budget,
    EvalContext,
    Evaluator,
    Result,
    ResultStore,
    executors,
    make_executor,
    worker,
    worker_state,
)
from archcompress.evaluate.executors import InlineExecutor, ProcessExecutor
from archcompress.space import Candidate, CompressionSpace

# Enough training that the two candidates end at clearly different accuracies (a real determinism check).
TRAINED = Budget(epochs=2, subset=400)
TINY = Budget(epochs=1, subset=200)


def two_candidates(space: CompressionSpace) -> list[Candidate]:
    return [space.uniform_candidate(0.5), space.sample(0)]


def check_results_and_store(
    results: list[Result], candidates: list[Candidate], evaluator: Evaluator, store: ResultStore
) -> None:
    """Every result ok, in input order, with the space's exact cost, and stored with candidate and features."""
    space = evaluator.space
    assert len(results) == len(candidates)
    for result, candidate in zip(results, candidates, strict=True):
        assert result.candidate == candidate
        assert result.candidate_hash == space.candidate_hash(candidate)
        assert result.status == "ok" and result.ok
        assert result.val_accuracy is not None and 0.0 <= result.val_accuracy <= 1.0
        assert result.params == space.cost(candidate).params
        assert result.macs == space.cost(candidate).macs
        assert result.train_seconds is not None and result.train_seconds > 0
        assert result.seed == evaluator.seed and not result.from_store
        stored = store.get(evaluator.key(result.candidate_hash))
        assert stored is not None
        assert stored.status == "ok" and stored.val_accuracy == result.val_accuracy
        assert stored.params == result.params and stored.macs == result.macs
        assert stored.method == "test"
        assert stored.candidate == space.canonical(candidate).to_dict()
        assert stored.features == space.candidate_features(candidate).tolist()
        assert stored.extra["inherited_layers"] + stored.extra["fresh_layers"] > 0
    assert len(store) == len({r.candidate_hash for r in results})


def inline_accuracies(context: EvalContext, candidates: list[Candidate], store_path: Path) -> list[float | None]:
    evaluator = Evaluator(context, ResultStore(store_path), InlineExecutor(), method="test")
    return [r.val_accuracy for r in evaluator.evaluate_many(candidates)]


@pytest.mark.parametrize(
    "executor_name",
    ["inline", "process", pytest.param("ray", marks=pytest.mark.slow)],  # ray: ~10 s to start a local Ray
)
def test_each_executor_evaluates_stores_and_then_reuses(
    executor_name: str, make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(TRAINED)
    space = worker_state(context).space
    candidates = two_candidates(space)
    assert space.candidate_hash(candidates[0]) != space.candidate_hash(candidates[1])
    store = ResultStore(tmp_path / "store.sqlite")
    # one thread per worker, like the inline evaluation in this process, so the numbers can be compared exactly
    executor = recorded(make_executor(executor_name, workers=2, threads_per_worker=1))
    evaluator = Evaluator(context, store, executor, method="test")
    seen: list[str] = []

    def on_result(result: Result) -> None:  # called as each finishes, after it is in the store
        assert store.get(evaluator.key(result.candidate_hash)) is not None
        assert len(store) == len(seen) + 1
        seen.append(result.candidate_hash)

    results = evaluator.evaluate_many(candidates, on_result=on_result)
    check_results_and_store(results, candidates, evaluator, store)
    assert len(executor.jobs) == 2 and sorted(seen) == sorted(r.candidate_hash for r in results)
    assert results[0].val_accuracy != results[1].val_accuracy  # the two students really differ

    # Deterministic on CPU: every executor gives the inline numbers for the same candidates and seed.
    assert [r.val_accuracy for r in results] == inline_accuracies(context, candidates, tmp_path / "inline.sqlite")

    # Asked again (a new evaluator on the same store, e.g. a resumed run): everything from the store, no job run.
    again_executor = recorded(InlineExecutor())
    again = Evaluator(context, store, again_executor, method="test").evaluate_many(list(reversed(candidates)))
    assert again_executor.jobs == []
    assert [r.from_store for r in again] == [True, True]
    assert [r.candidate for r in again] == list(reversed(candidates))
    assert [(r.status, r.val_accuracy, r.params) for r in again] == [
        (r.status, r.val_accuracy, r.params) for r in reversed(results)
    ]
    assert len(store) == 2


def test_store_hits_run_no_training(
    make_context: Callable[..., EvalContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    candidates = two_candidates(space)
    store = ResultStore(tmp_path / "store.sqlite")
    first = Evaluator(context, store, InlineExecutor()).evaluate_many(candidates)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored candidate was trained again")

    monkeypatch.setattr(worker, "fit", no_training)
    monkeypatch.setattr(executors, "run_job", no_training)
    second = Evaluator(context, store, InlineExecutor()).evaluate_many(candidates)
    assert all(r.from_store for r in second) and not any(r.from_store for r in first)
    assert [r.val_accuracy for r in second] == [r.val_accuracy for r in first]


def test_duplicates_in_one_call_are_trained_once(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    first, second = two_candidates(space)
    twin = space.canonical(first)  # another spelling of the same student (a group below 10 channels stays whole)
    assert twin != first and space.candidate_hash(twin) == space.candidate_hash(first)
    executor = recorded(InlineExecutor())
    store = ResultStore(tmp_path / "store.sqlite")
    finished: list[Result] = []
    results = Evaluator(context, store, executor).evaluate_many([first, second, first, twin], finished.append)
    assert len(executor.jobs) == 2
    assert len(finished) == 2 and len(store) == 2
    assert [r.candidate for r in results] == [first, second, first, twin]
    assert results[0].candidate_hash == results[2].candidate_hash == results[3].candidate_hash
    assert results[0].val_accuracy == results[2].val_accuracy == results[3].val_accuracy
    assert all(r.ok and not r.from_store for r in results)


def test_invalid_candidate_is_recorded_and_not_retried(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    valid = space.uniform_candidate(0.5)
    invalid = replace(valid, ratios=(1.5,) * len(valid.ratios))  # a width ratio outside (0, 1]
    assert space.check(invalid) is not None
    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, InlineExecutor())
    bad, good = evaluator.evaluate_many([invalid, valid])
    assert bad.status == "invalid" and not bad.ok
    assert bad.val_accuracy is None and bad.params is None
    assert good.status == "ok"
    stored = store.get(evaluator.key(bad.candidate_hash))
    assert stored is not None and stored.status == "invalid"
    assert stored.candidate["ratios"] == [1.5] * len(valid.ratios)
    assert stored.features == space.candidate_features(invalid).tolist()

    executor = recorded(InlineExecutor())
    again = Evaluator(context, store, executor).evaluate(invalid)
    assert again.status == "invalid" and again.from_store and executor.jobs == []


def test_diverging_budget_gives_diverged_and_is_not_retried(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(replace(TINY, lr=1e12))
    space = worker_state(context).space
    candidates = two_candidates(space)
    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, InlineExecutor())
    results = evaluator.evaluate_many(candidates)
    assert [r.status for r in results] == ["diverged", "diverged"]
    for result, candidate in zip(results, candidates, strict=True):
        assert result.val_accuracy is None and not result.ok
        assert result.params == space.cost(candidate).params  # the student was built before it diverged
        stored = store.get(evaluator.key(result.candidate_hash))
        assert stored is not None and stored.status == "diverged"
    executor = recorded(InlineExecutor())
    again = Evaluator(context, store, executor).evaluate_many(candidates)
    assert executor.jobs == [] and [r.status for r in again] == ["diverged", "diverged"]


def test_one_diverging_candidate_does_not_stop_the_others(
    make_context: Callable[..., EvalContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    candidates = [space.uniform_candidate(0.5), space.sample(0), space.sample(1)]
    assert len({space.cost(c).params for c in candidates}) == 3
    bad_params = space.cost(candidates[1]).params
    real_fit = worker.fit

    def fit(model, train, val, loss, config, device, *rest, **options):  # type: ignore[no-untyped-def]
        if sum(p.numel() for p in model.parameters()) == bad_params:
            config = replace(config, lr=1e12)  # only this student gets an absurd learning rate
        return real_fit(model, train, val, loss, config, device, *rest, **options)

    monkeypatch.setattr(worker, "fit", fit)
    results = Evaluator(context, ResultStore(tmp_path / "store.sqlite"), InlineExecutor()).evaluate_many(candidates)
    assert [r.status for r in results] == ["ok", "diverged", "ok"]


def test_build_failure_is_recorded_then_retried_next_time(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    broken, fine = two_candidates(space)
    real_build = CompressionSpace.build

    def build(self: CompressionSpace, candidate: Candidate, inherit: bool = True):  # type: ignore[no-untyped-def]
        if self.candidate_hash(candidate) == space.candidate_hash(broken):
            raise RuntimeError("no kernel for this layer\nsecond line")
        return real_build(self, candidate, inherit)

    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, InlineExecutor())
    with monkeypatch.context() as patch:
        patch.setattr(CompressionSpace, "build", build)
        failed, ok = evaluator.evaluate_many([broken, fine])  # does not raise
    assert failed.status == "failed: build: RuntimeError: no kernel for this layer"
    assert failed.val_accuracy is None and not failed.ok
    assert ok.status == "ok"
    stored = store.get(evaluator.key(failed.candidate_hash))
    assert stored is not None and stored.status == failed.status

    # A failure may be transient: the next evaluation trains that candidate again, and only that one.
    executor = recorded(InlineExecutor())
    retried, reused = Evaluator(context, store, executor).evaluate_many([broken, fine])
    assert len(executor.jobs) == 1
    assert retried.status == "ok" and not retried.from_store
    assert reused.from_store and reused.val_accuracy == ok.val_accuracy
    assert store.get(evaluator.key(failed.candidate_hash)).status == "ok"  # type: ignore[union-attr]


def test_process_executor_refuses_zero_workers() -> None:
    from archcompress.errors import ArchcompressError

    with pytest.raises(ArchcompressError, match="--workers"):
        ProcessExecutor(0)
    with pytest.raises(ArchcompressError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_shared_store_is_read_after_the_run_store_and_written_with_it(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    first, second = two_candidates(space)
    shared = ResultStore(tmp_path / "shared.sqlite")
    run_a = ResultStore(tmp_path / "a.sqlite")
    trained = Evaluator(context, run_a, InlineExecutor(), shared_store=shared).evaluate(first)
    assert len(run_a) == 1 and len(shared) == 1  # a new result goes to both

    # Another run with its own store finds the first candidate in the shared one and lists it as its own.
    run_b = ResultStore(tmp_path / "b.sqlite")
    executor = recorded(InlineExecutor())
    evaluator = Evaluator(context, run_b, executor, shared_store=shared)
    reused, new = evaluator.evaluate_many([first, second])
    assert reused.from_store and reused.val_accuracy == trained.val_accuracy
    assert not new.from_store and len(executor.jobs) == 1
    assert len(run_b) == 2 and len(shared) == 2 and len(run_a) == 1
    copied = run_b.get(evaluator.key(reused.candidate_hash))
    assert copied is not None and copied.val_accuracy == trained.val_accuracy


def test_results_are_keyed_by_seed(
    make_context: Callable[..., EvalContext], recorded: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    candidate = worker_state(context).space.uniform_candidate(0.5)
    store = ResultStore(tmp_path / "store.sqlite")
    Evaluator(context, store, InlineExecutor(), seed=0).evaluate(candidate)
    executor = recorded(InlineExecutor())
    other_seed = Evaluator(context, store, executor, seed=1).evaluate(candidate)
    assert not other_seed.from_store and other_seed.seed == 1 and len(executor.jobs) == 1
    assert executor.jobs[0][1] == 1
    assert len(store) == 2


def test_the_worker_keeps_only_the_most_recently_used_set_ups(make_context: Callable[..., EvalContext]) -> None:
    """A notebook that compresses several teachers (or budgets) must not keep every set-up and its logits."""
    from archcompress.evaluate import worker

    contexts = [make_context(Budget(epochs=1, subset=size)) for size in (100, 200, 300)]
    states = [worker_state(context) for context in contexts]
    assert len(worker._STATES) <= worker.MAX_CACHED_STATES
    assert worker_state(contexts[2]) is states[2]  # the newest is reused as is
    assert contexts[0].fingerprint() not in worker._STATES  # the oldest was let go
    assert worker_state(contexts[0]) is not states[0]  # and is built again when asked for
