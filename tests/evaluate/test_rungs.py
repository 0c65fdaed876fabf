"""Multi-fidelity evaluation: the promotion ladder, continued training across rungs, rung results in the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from archcompress.data import load_dataset
from archcompress.distill import TrainConfig, fit, make_distill_loss
from archcompress.distill.teacher_targets import CachedLogits
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Budget, EvalContext, Evaluator, ResultStore, worker_state
from archcompress.evaluate.executors import InlineExecutor, make_executor
from archcompress.evaluate.rungs import Ladder, checkpoint_path
from archcompress.models import zoo_entry

RUNGS = Budget(subset=200, rungs=(1, 2, 3))


def test_nothing_goes_up_before_a_rung_has_three_eligible_results() -> None:
    ladder = Ladder(top_rung=2)
    ladder.add(0, "a", 0.5)
    ladder.add(0, "b", 0.9)
    assert ladder.promotions() == []
    ladder.add(0, "c", 0.1)
    assert ladder.promotions() == [("b", 1)]
    assert ladder.promotions() == []  # promoted once only


def test_the_top_fraction_grows_with_the_rung_and_skips_ineligible_results() -> None:
    ladder = Ladder(top_rung=1, promote=0.5)
    for name, score in [("a", 0.2), ("b", None), ("c", 0.4), ("d", None), ("e", 0.3), ("f", 0.9)]:
        ladder.add(0, name, score)
    assert ladder.promotions() == [("f", 1), ("c", 1)]  # 4 eligible: the best 2, best first
    ladder.add(0, "g", 0.35)
    assert ladder.promotions() == []  # 5 eligible: still 2
    ladder.add(0, "h", 0.95)
    assert ladder.promotions() == [("h", 1)]  # 6 eligible: 3, and f and c are up already


def test_a_result_at_a_higher_rung_counts_as_promoted_from_every_lower_one() -> None:
    ladder = Ladder(top_rung=2)
    ladder.add(2, "a", 0.9)  # e.g. found in the store on resume
    for name, score in [("a", 0.5), ("b", 0.1), ("c", 0.2)]:
        ladder.add(0, name, score)
    assert ladder.promotions() == [] and ladder.reached("a") == 2 and ladder.counts() == [3, 0, 1]


def test_an_early_promotion_outside_the_final_top_third_still_counts_and_can_go_higher() -> None:
    ladder = Ladder(top_rung=2)
    for name, score in [("a", 0.5), ("b", 0.1), ("c", 0.2)]:
        ladder.add(0, name, score)
    assert ladder.promotions() == [("a", 1)]  # the best of the first three, as results arrive in parallel
    for name, score in [("d", 0.9), ("e", 0.8), ("f", 0.05)]:
        ladder.add(0, name, score)
    assert ladder.promotions() == [("d", 1), ("e", 1)]  # the final best two; a stays up
    for name, score in [("a", 0.6), ("d", 0.95), ("e", 0.7)]:
        ladder.add(1, name, score)
    assert ladder.promotions() == [("d", 2)] and ladder.counts() == [6, 3, 0]


@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=30), st.sampled_from([1 / 4, 1 / 3, 1 / 2]))
def test_the_final_top_fraction_is_always_promoted_and_never_an_ineligible_one(
    scores: list[float | None], promote: float
) -> None:
    ladder = Ladder(top_rung=1, promote=promote)
    up: list[str] = []
    for index, score in enumerate(scores):
        ladder.add(0, str(index), score)
        up += [digest for digest, rung in ladder.promotions() if rung == 1]
    eligible = sorted(((s, str(i)) for i, s in enumerate(scores) if s is not None), reverse=True)
    quota = int(promote * len(eligible) + 1e-9)
    assert {digest for _, digest in eligible[:quota]} <= set(up)  # ASHA never takes a promotion back
    assert len(up) == len(set(up)) and all(scores[int(digest)] is not None for digest in up)


def test_rungs_are_validated_and_keyed_per_rung() -> None:
    with pytest.raises(ArchcompressError, match="--rungs must be increasing"):
        Budget(rungs=(3, 1)).validate()
    with pytest.raises(ArchcompressError, match="--rungs must be increasing"):
        Budget(rungs=(0, 2)).validate()
    plain = json.loads(Budget(epochs=2).key())
    assert "rungs" not in plain and "rung" not in plain  # keys of budgets without rungs did not change
    keys = {RUNGS.key(rung) for rung in range(3)}
    assert len(keys) == 3 and json.loads(RUNGS.key(1))["rung"] == 1
    assert RUNGS.train_config(seed=0).epochs == 3 and RUNGS.rung_epochs(1) == 2 and RUNGS.top_rung == 2


def test_a_run_stopped_at_an_epoch_and_continued_equals_the_run_straight_through() -> None:
    splits = load_dataset("digits")
    train = splits.train.subset(torch.arange(256))
    targets = CachedLogits(torch.randn(len(train), 10))
    loss = make_distill_loss("l2", targets)
    config = TrainConfig(epochs=3, batch_size=64, optimizer="adam", augment=False, seed=1)
    torch.manual_seed(0)
    straight = zoo_entry("lenet5").factory((1, 8, 8), 10)
    pieces = zoo_entry("lenet5").factory((1, 8, 8), 10)
    pieces.load_state_dict(straight.state_dict())
    device = torch.device("cpu")
    fit(straight, train, None, loss, config, device)
    first = fit(pieces, train, None, loss, config, device, until_epoch=1)
    assert first.state is not None and first.state.epoch == 1 and len(first.epochs) == 1
    rest = fit(pieces, train, None, loss, config, device, resume=first.state)
    assert rest.state is not None and rest.state.epoch == 3 and rest.state.step == first.state.step * 3
    for a, b in zip(straight.parameters(), pieces.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def rung_context(make_context: Callable[..., EvalContext], tmp_path: Path) -> EvalContext:
    return replace(make_context(RUNGS), checkpoint_dir=str(tmp_path / "rungs"))


def test_the_best_third_goes_up_continuing_from_its_checkpoint(
    make_context: Callable[..., EvalContext], tmp_path: Path
) -> None:
    context = rung_context(make_context, tmp_path)
    space = worker_state(context).space
    candidates = [space.sample(seed) for seed in range(6)]
    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, InlineExecutor())
    arrived = []
    results = evaluator.evaluate_many(candidates, on_result=arrived.append)
    first = {r.candidate_hash: r for r in arrived if r.rung == 0}
    up = [r for r in arrived if r.rung == 1]
    assert len(first) == 6 and len(up) == 2 and not any(r.rung == 2 for r in arrived)  # 2 eligible at rung 1
    best_two = sorted(first.values(), key=lambda r: r.val_accuracy or 0)[-2:]
    assert {r.candidate_hash for r in up} == {r.candidate_hash for r in best_two}
    assert all(r.epochs == 2 for r in up) and all(r.epochs == 1 for r in first.values())
    # the search gets each candidate at its best fidelity, in input order
    assert [r.candidate_hash for r in results] == [space.candidate_hash(c) for c in candidates]
    assert sorted(r.rung for r in results) == [0, 0, 0, 0, 1, 1]
    # every rung's result is stored under its own key; the promoted ones trained on from their checkpoints
    for result in up:
        stored = store.get(evaluator.key(result.candidate_hash, 1))
        assert stored is not None and stored.extra["continued"] is True and stored.extra["epochs"] == 2
        assert store.get(evaluator.key(result.candidate_hash, 0)) is not None
    # only what a promotion could continue from is kept: rung-0 files of the others, rung-1 files of the two
    files = [p.name[-8:] for p in (tmp_path / "rungs").iterdir()]
    assert sorted(files) == ["rung0.pt"] * 4 + ["rung1.pt"] * 2


def test_a_resumed_search_finds_every_rung_in_the_store(
    make_context: Callable[..., EvalContext], tmp_path: Path, recorded: Callable
) -> None:
    context = rung_context(make_context, tmp_path)
    space = worker_state(context).space
    candidates = [space.sample(seed) for seed in range(6)]
    store = ResultStore(tmp_path / "store.sqlite")
    before = Evaluator(context, store, InlineExecutor()).evaluate_many(candidates)
    executor = recorded(InlineExecutor())
    after = Evaluator(context, store, executor).evaluate_many(candidates)
    assert executor.jobs == []
    assert [(r.candidate_hash, r.rung, r.val_accuracy) for r in after] == [
        (r.candidate_hash, r.rung, r.val_accuracy) for r in before
    ]
    assert all(r.from_store for r in after)
    known = Evaluator(context, store, InlineExecutor()).stored_results(store)
    assert sorted(r.rung for r in known) == [0, 0, 0, 0, 1, 1]  # each candidate once, at its highest rung


def test_a_missing_checkpoint_trains_the_promotion_from_the_start(
    make_context: Callable[..., EvalContext], tmp_path: Path
) -> None:
    context = make_context(RUNGS)  # no checkpoint folder (e.g. a cluster without a shared disk)
    space = worker_state(context).space
    evaluator = Evaluator(context, ResultStore(tmp_path / "store.sqlite"), InlineExecutor())
    results = evaluator.evaluate_many([space.sample(seed) for seed in range(3)])
    (up,) = [r for r in results if r.rung == 1]
    stored = evaluator.store.get(evaluator.key(up.candidate_hash, 1))
    assert stored is not None and stored.extra["continued"] is False and stored.extra["epochs"] == 2


def test_a_candidate_scored_none_is_never_promoted(make_context: Callable[..., EvalContext], tmp_path: Path) -> None:
    context = rung_context(make_context, tmp_path)
    space = worker_state(context).space
    candidates = [space.sample(seed) for seed in range(4)]
    small = min(space.cost(c).params for c in candidates)
    evaluator = Evaluator(context, ResultStore(tmp_path / "store.sqlite"), InlineExecutor(),
                          score=lambda r: r.val_accuracy if r.params == small else None)  # fmt: skip
    results = evaluator.evaluate_many(candidates)
    assert all(r.rung == 0 for r in results)  # one eligible result: below the quota of one in three
    assert evaluator.ladder.counts() == [4, 0, 0]
    # only the eligible candidate keeps a checkpoint: the others can never go up
    (kept,) = (tmp_path / "rungs").iterdir()
    (small_result,) = [r for r in results if r.params == small]
    assert kept == checkpoint_path(tmp_path / "rungs", context.fingerprint(), 0, small_result.candidate_hash, 0)


@pytest.mark.parametrize("executor_name", ["process", pytest.param("ray", marks=pytest.mark.slow)])
def test_promotions_run_on_parallel_executors_as_inline(
    executor_name: str, make_context: Callable[..., EvalContext], tmp_path: Path
) -> None:
    context = rung_context(make_context, tmp_path)
    space = worker_state(context).space
    candidates = [space.sample(seed) for seed in range(6)]
    executor = make_executor(executor_name, workers=2, threads_per_worker=1)
    try:
        pooled = Evaluator(context, ResultStore(tmp_path / "pool.sqlite"), executor).evaluate_many(candidates)
    finally:
        executor.close()
    inline_context = replace(context, checkpoint_dir=str(tmp_path / "inline-rungs"))
    Evaluator(inline_context, ResultStore(tmp_path / "inline.sqlite"), InlineExecutor()).evaluate_many(candidates)
    got, want = scores_by_rung(tmp_path / "pool.sqlite"), scores_by_rung(tmp_path / "inline.sqlite")
    # every run is deterministic on CPU, whichever worker ran it and whether it continued from a checkpoint
    assert {key: got[key] for key in got.keys() & want.keys()} == {key: want[key] for key in got.keys() & want.keys()}
    assert {key for key in got if key[1] == 0} == {key for key in want if key[1] == 0}
    # which candidates go up depends on the order the results arrive in (ASHA promotes the best so far), but
    # the final best third always does
    first = {digest: score for (digest, rung), score in got.items() if rung == 0}
    best_two = sorted(first, key=lambda digest: first[digest])[-2:]
    assert all((digest, 1) in got for digest in best_two)
    # each candidate comes back at the highest rung it reached (when an early promotion is not in the final best
    # two, three candidates reach rung 1 and the best of them goes on to rung 2)
    highest: dict[str, int] = {}
    for digest, rung in got:
        highest[digest] = max(rung, highest.get(digest, 0))
    assert {r.candidate_hash: r.rung for r in pooled} == highest


def scores_by_rung(path: Path) -> dict[tuple[str, int], float]:
    """Val accuracy of every stored result, by (candidate hash, rung)."""
    rows = ResultStore(path).query()
    return {(row.key.candidate_hash, json.loads(row.key.budget)["rung"]): row.val_accuracy or 0.0 for row in rows}


class OneAtATime:
    """A search that proposes given candidates one per batch and records what it is told."""

    name = "fixed"
    batch_size = 1

    def __init__(self, candidates: list) -> None:  # type: ignore[type-arg]
        self.queue = list(candidates)
        self.observed: list = []  # type: ignore[type-arg]
        self.revised: list = []  # type: ignore[type-arg]

    def propose(self, count: int) -> list:  # type: ignore[type-arg]
        return [self.queue.pop(0)] if self.queue else []

    def observe(self, results: list) -> None:  # type: ignore[type-arg]
        self.observed += results

    def revise(self, results: list) -> None:  # type: ignore[type-arg]
        self.revised += results


def test_a_search_is_told_of_promotions_of_candidates_it_observed_before(
    make_context: Callable[..., EvalContext], tmp_path: Path
) -> None:
    from archcompress.search.loop import run_search

    context = rung_context(make_context, tmp_path)
    space = worker_state(context).space
    search = OneAtATime([space.sample(seed) for seed in range(6)])
    results = run_search(search, Evaluator(context, ResultStore(tmp_path / "s.sqlite"), InlineExecutor()), 6)
    assert len(results) == 6 and all(r.rung == 0 for r in search.observed[:2])
    # each promotion of an earlier candidate reaches the search once, at its new rung
    assert search.revised and all(r.rung >= 1 for r in search.revised)
    assert len({(r.candidate_hash, r.rung) for r in search.revised}) == len(search.revised)
    observed_first = {r.candidate_hash for r in search.observed}
    assert {r.candidate_hash for r in search.revised} <= observed_first
