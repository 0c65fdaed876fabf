"""Fixtures for the evaluator tests: one tiny trained teacher per session, a private cache home per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from archcompress.checkpoint import load_teacher
from archcompress.data import DataOptions
from archcompress.evaluate import Budget, EvalContext, EvalOutcome
from archcompress.evaluate.executors import Executor, Job
from archcompress.runtime import cache_home, torch_threads

TINY = Budget(epochs=1, subset=200)  # a few optimiser steps per candidate


@pytest.fixture(scope="session")
def teacher_path(tiny_teacher: Path) -> Path:
    return tiny_teacher


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, so that results do not depend on the thread count (restored afterwards)."""
    with torch_threads(1):
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$ARCHCOMPRESS_HOME`` (teacher-logit cache, shared store) for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(path))
    assert cache_home() == path
    return path


@pytest.fixture
def make_context(home: Path, teacher_path: Path) -> Callable[..., EvalContext]:
    """``make_context(budget=TINY, data=None)``: the session teacher on digits, logits cached under ``home``."""
    sha256 = load_teacher(teacher_path).sha256

    def make(budget: Budget = TINY, data: DataOptions | None = None) -> EvalContext:
        return EvalContext(
            teacher_path=str(teacher_path),
            teacher_sha256=sha256,
            dataset="digits",
            data=data or DataOptions(),
            budget=budget,
            cache_dir=str(home / "logits"),
            device="cpu",
        )

    return make


class RecordingExecutor:
    """Wraps an executor and records every batch of jobs it is asked to run."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[Sequence[Job]] = []

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]:
        self.calls.append(jobs)  # the evaluator's own list: promotions appended during the run show too
        yield from self.inner.run(context, jobs)

    @property
    def jobs(self) -> list[Job]:
        return [job for call in self.calls for job in call]

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def recorded() -> Iterator[Callable[[Executor], RecordingExecutor]]:
    """``recorded(executor)``: a ``RecordingExecutor`` around it, closed when the test ends."""
    made: list[RecordingExecutor] = []

    def wrap(executor: Executor) -> RecordingExecutor:
        made.append(RecordingExecutor(executor))
        return made[-1]

    yield wrap
    for executor in made:
        executor.close()
