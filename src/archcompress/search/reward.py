"""The N2N reward and the choice of the final student from evaluated candidates."""

from __future__ import annotations

import math
from collections.abc import Sequence

from archcompress.evaluate import Result

INVALID_REWARD = -1.0  # [paper] invalid or diverged students


def compression(params: int, teacher_params: int) -> float:
    """``C = 1 - params_student / params_teacher`` (N2N's relative compression, in [0, 1))."""
    return 1.0 - params / teacher_params


def n2n_reward(accuracy: float, params: int, teacher_accuracy: float, teacher_params: int) -> float:
    """``R = C (2 - C) * acc / acc_teacher`` [paper]; C is the relative compression."""
    c = compression(params, teacher_params)
    return c * (2.0 - c) * (accuracy / teacher_accuracy)


def log_compression(ratio: float, max_ratio: float) -> float:
    """Compression on a log scale, ``log(ratio) / log(max_ratio)`` clipped to [0, 1].

    The paper's ``C`` saturates past ~10x (``C (2 - C)`` is 0.99 at 10x and 0.9996 at 50x), so it cannot
    tell 100x from 500x; this one keeps rewarding compression up to ``max_ratio`` (the target, or the
    smallest student the space allows).
    """
    if ratio <= 1.0 or max_ratio <= 1.0:
        return 0.0
    return min(1.0, math.log(ratio) / math.log(max_ratio))


def annealed_penalty(reward: float, iteration: int, horizon: int = 15) -> float:
    """[N2N code] soft constraint: ``R' = (e - 1) + e R`` with ``e = clip((1 - it / horizon)^4, 0, 1)``.

    At the first update a constraint violation costs nothing; after ``horizon`` updates it costs the full
    ``-1`` of an invalid student, so the policy is steered into the feasible region gradually.
    """
    e = min(1.0, max(0.0, (1.0 - iteration / horizon) ** 4)) if iteration < horizon else 0.0
    return (e - 1.0) + e * reward


def result_reward(result: Result, teacher_accuracy: float, teacher_params: int) -> float:
    """The reward of an evaluated candidate; -1 for anything that did not train to an accuracy."""
    if not result.ok or result.val_accuracy is None or result.params is None:
        return INVALID_REWARD
    return n2n_reward(result.val_accuracy, result.params, teacher_accuracy, teacher_params)


def choose_best(
    results: Sequence[Result], teacher_accuracy: float, teacher_params: int, target: float | None = None
) -> tuple[Result | None, bool]:
    """The candidate to distil: the highest reward among those meeting ``target`` (teacher/student params).

    Returns ``(best, target_met)``: when no candidate reaches the target, the best reward overall is
    returned with ``target_met=False``; ``best`` is None only when nothing trained successfully.
    """
    ok = [r for r in results if r.ok and r.params]
    if not ok:
        return None, False
    key = lambda r: (result_reward(r, teacher_accuracy, teacher_params), -(r.params or 0))  # noqa: E731
    if target is not None:
        meeting = [r for r in ok if teacher_params / (r.params or 1) >= target]
        if meeting:
            return max(meeting, key=key), True
        return max(ok, key=key), False
    return max(ok, key=key), True
