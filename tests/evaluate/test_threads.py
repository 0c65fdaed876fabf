"""Torch threads per evaluation: chosen by the student's size (or set by the user), applied around training only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch

from archcompress import runtime
from archcompress.errors import ArchcompressError
from archcompress.evaluate import EvalContext, run_job, worker, worker_state
from archcompress.runtime import MACS_PER_THREAD, threads_for_student, torch_threads


@pytest.mark.parametrize(
    ("macs", "available", "expected"),
    [
        (0, 8, 1),
        (30_000, 8, 1),  # a 1-D CNN student: Python-bound, one thread
        (MACS_PER_THREAD - 1, 8, 1),
        (2 * MACS_PER_THREAD, 8, 2),
        (41_000_000, 8, min(8, 41_000_000 // MACS_PER_THREAD)),  # ResNet-20-sized
        (41_000_000, 2, 2),  # never more than this process was given
        (10**12, 1, 1),
        (10**12, 0, 1),  # a nonsense cap still trains with one thread
    ],
)
def test_threads_grow_with_the_student_up_to_the_available_cores(macs: int, available: int, expected: int) -> None:
    assert threads_for_student(macs, available) == expected


@pytest.mark.parametrize("override", [1, 3, 16])
def test_the_user_override_wins_over_the_size_rule(override: int) -> None:
    assert threads_for_student(10**12, 2, override) == override
    assert threads_for_student(10, 2, override) == override


@pytest.mark.parametrize("override", [0, -2])
def test_a_thread_override_below_one_is_refused(override: int) -> None:
    with pytest.raises(ArchcompressError, match=f"--threads must be at least 1, got {override}"):
        threads_for_student(100, 2, override)


def test_threads_are_not_part_of_the_set_up_fingerprint(make_context: Callable[..., EvalContext]) -> None:
    context = make_context()
    assert replace(context, threads=3).fingerprint() == context.fingerprint()
    assert replace(context, device="cuda").fingerprint() != context.fingerprint()


@pytest.fixture
def seen_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The torch thread count at each call of the worker's ``fit`` (the real one still trains)."""
    seen: list[int] = []
    real_fit = worker.fit

    def recording_fit(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(worker, "fit", recording_fit)
    return seen


def test_run_job_trains_a_tiny_student_on_one_thread_and_restores_the_count(
    make_context: Callable[..., EvalContext], seen_threads: list[int]
) -> None:
    context = make_context()
    candidate = worker_state(context).space.uniform_candidate(0.5)
    with torch_threads(2):
        outcome = run_job(context, candidate.to_dict(), 0)
        assert torch.get_num_threads() == 2  # restored after the job
    assert outcome.status == "ok" and outcome.macs is not None and outcome.macs < MACS_PER_THREAD
    assert seen_threads == [1]


def test_run_job_gives_a_large_student_every_available_thread(
    make_context: Callable[..., EvalContext], seen_threads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "MACS_PER_THREAD", 1)  # every student counts as large
    context = make_context()
    candidate = worker_state(context).space.uniform_candidate(0.5)
    with torch_threads(2):
        assert run_job(context, candidate.to_dict(), 0).status == "ok"
        assert torch.get_num_threads() == 2
    assert seen_threads == [2]


def test_run_job_applies_the_threads_setting(make_context: Callable[..., EvalContext], seen_threads: list[int]) -> None:
    context = replace(make_context(), threads=3)
    candidate = worker_state(context).space.uniform_candidate(0.5)
    assert run_job(context, candidate.to_dict(), 0).status == "ok"
    assert seen_threads == [3]
    assert torch.get_num_threads() == 1  # the suite's one thread, restored
