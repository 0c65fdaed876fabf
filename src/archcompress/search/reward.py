"""The N2N reward and the choice of the final student from evaluated candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from archcompress.errors import ArchcompressError
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


def reward_of(
    status: str, val_accuracy: float | None, size: float | None, teacher_accuracy: float, teacher_size: float
) -> float:
    """The paper reward of one evaluation (stored or fresh); -1 for anything that did not train to an accuracy.

    ``size`` is the student's size under the objective (params, MACs or milliseconds), ``teacher_size`` the
    teacher's.
    """
    if status != "ok" or val_accuracy is None or not size:
        return INVALID_REWARD
    c = 1.0 - size / teacher_size
    return c * (2.0 - c) * (val_accuracy / teacher_accuracy)


def result_reward(result: Result, teacher_accuracy: float, teacher_params: int) -> float:
    """The reward of an evaluated candidate on parameters; -1 for anything that did not train to an accuracy."""
    return reward_of(result.status, result.val_accuracy, result.params, teacher_accuracy, teacher_params)


class Figures(Protocol):
    """What the reward and the constraints read of an evaluated candidate: a search ``Result`` or a report row."""

    @property
    def status(self) -> str: ...
    @property
    def val_accuracy(self) -> float | None: ...
    @property
    def params(self) -> int | None: ...
    @property
    def macs(self) -> int | None: ...
    @property
    def latency_ms(self) -> float | None: ...


def student_size(result: Figures, objective: str) -> float | None:
    """A candidate's size under ``objective``: its params, MACs or measured latency in milliseconds."""
    if objective == "latency":
        return result.latency_ms
    return result.params if objective == "params" else result.macs


@dataclass(frozen=True)
class TeacherStats:
    """What the reward compares a student with."""

    accuracy: float  # on val
    params: int
    macs: int
    latency_ms: float | None = None  # CPU batch-1 latency; needed by ``objective="latency"``

    def size(self, objective: str) -> float:
        """The teacher's size under ``objective`` (params, MACs or milliseconds)."""
        if objective == "latency":
            if self.latency_ms is None:
                raise ArchcompressError("objective latency needs the teacher's measured latency")
            return self.latency_ms
        return float(self.params if objective == "params" else self.macs)

    def reward(self, result: Figures, objective: str = "params") -> float:
        """The paper reward of ``result`` with the compression term measured on ``objective``."""
        return reward_of(result.status, result.val_accuracy, student_size(result, objective), self.accuracy,
                         self.size(objective))  # fmt: skip
