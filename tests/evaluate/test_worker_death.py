"""Worker processes that die mid-task: the task is retried once, then recorded as failed; the rest go on."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from archcompress.evaluate import Budget, EvalContext, EvalOutcome, Evaluator, ResultStore, worker_state
from archcompress.evaluate.executors import InlineExecutor, Job, ProcessExecutor

TINY = Budget(epochs=1, subset=200)


class KillWorker:
    """Put in a job, it SIGKILLs the worker process that unpickles the job, while ``marker`` lists < ``times`` kills.

    Pickled as a call of the built-in ``exec``, so the worker needs no test code to run it.
    """

    def __init__(self, marker: Path, times: int) -> None:
        self.marker = marker
        self.times = times

    def __reduce__(self) -> tuple[object, tuple[str]]:
        code = (
            "import os, pathlib, signal\n"
            f"marker = pathlib.Path({str(self.marker)!r})\n"
            "kills = marker.read_text().split() if marker.exists() else []\n"
            f"if len(kills) < {self.times}:\n"
            "    marker.write_text(' '.join([*kills, str(os.getpid())]))\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        return exec, (code,)

    def kills(self) -> list[int]:
        return [int(pid) for pid in self.marker.read_text().split()] if self.marker.exists() else []


class DoomedJob(ProcessExecutor):
    """A process pool whose job number ``doomed`` carries a ``KillWorker`` (the candidate dict ignores it)."""

    def __init__(self, workers: int, doomed: int, killer: KillWorker) -> None:
        super().__init__(workers, threads_per_worker=1)
        self.doomed = doomed
        self.killer = killer

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]:
        marked = [
            ({**candidate, "kill": self.killer}, seed, rung) if index == self.doomed else (candidate, seed, rung)
            for index, (candidate, seed, rung) in enumerate(jobs)
        ]
        yield from super().run(context, marked)


@pytest.fixture
def closing() -> Iterator[Callable[[ProcessExecutor], ProcessExecutor]]:
    made: list[ProcessExecutor] = []

    def register(executor: ProcessExecutor) -> ProcessExecutor:
        made.append(executor)
        return executor

    yield register
    for executor in made:
        executor.close()


def test_a_worker_killed_once_is_retried_and_the_result_is_ok(
    make_context: Callable[..., EvalContext], closing: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    candidates = [space.uniform_candidate(0.5), space.sample(0)]
    killer = KillWorker(tmp_path / "kills.txt", times=1)
    executor = closing(DoomedJob(2, doomed=0, killer=killer))
    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, executor)
    results = evaluator.evaluate_many(candidates)
    assert len(killer.kills()) == 1  # the worker really died once
    assert [r.status for r in results] == ["ok", "ok"]
    # the retried job trained exactly as it would have without the crash
    reference = Evaluator(context, ResultStore(tmp_path / "inline.sqlite"), InlineExecutor()).evaluate_many(candidates)
    assert [r.val_accuracy for r in results] == [r.val_accuracy for r in reference]
    assert [s.status for s in store.query()] == ["ok", "ok"]


@pytest.mark.slow  # three process pools one after another
def test_a_job_whose_worker_dies_twice_fails_alone(
    make_context: Callable[..., EvalContext], closing: Callable, tmp_path: Path
) -> None:
    context = make_context(TINY)
    space = worker_state(context).space
    candidates = [space.uniform_candidate(0.5), space.sample(0), space.sample(1)]
    killer = KillWorker(tmp_path / "kills.txt", times=100)
    # The first job kills the first worker that picks it up, while the other two are still in the pool.
    executor = closing(DoomedJob(2, doomed=0, killer=killer))
    store = ResultStore(tmp_path / "store.sqlite")
    evaluator = Evaluator(context, store, executor)
    results = evaluator.evaluate_many(candidates)
    assert len(killer.kills()) == 2  # one retry, no more
    assert results[0].status.startswith("failed: worker died twice (")
    assert results[0].val_accuracy is None and results[0].params is None
    assert [results[1].status, results[2].status] == ["ok", "ok"]  # the other jobs are not charged for it
    stored = store.get(evaluator.key(results[0].candidate_hash))
    assert stored is not None and stored.status == results[0].status

    # The failure is recorded, not final: a later evaluation (here without the killer) trains it again.
    again = Evaluator(context, store, closing(ProcessExecutor(1, threads_per_worker=1))).evaluate_many(candidates)
    assert [r.status for r in again] == ["ok", "ok", "ok"]
    assert [r.from_store for r in again] == [False, True, True]


def test_a_worker_killed_from_outside_mid_task_is_retried(
    make_context: Callable[..., EvalContext], closing: Callable, tmp_path: Path
) -> None:
    """SIGKILL from another thread (as the OOM killer would) to the pool's only worker, with the job in flight."""
    context = make_context(TINY)
    candidate = worker_state(context).space.uniform_candidate(0.5)
    executor = closing(ProcessExecutor(1, threads_per_worker=1))
    killed: list[int] = []
    before = {p.pid for p in multiprocessing.active_children()}

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.pid not in before and child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    break
            time.sleep(0.01)

    thread = threading.Thread(target=kill_first_worker, daemon=True)
    thread.start()
    result = Evaluator(context, ResultStore(tmp_path / "store.sqlite"), executor).evaluate(candidate)
    thread.join(5)
    assert len(killed) == 1
    assert result.status == "ok" and result.val_accuracy is not None
