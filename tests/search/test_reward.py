"""The N2N reward."""

from __future__ import annotations

import pytest

from archcompress.evaluate import Result
from archcompress.search import INVALID_REWARD, compression, n2n_reward, result_reward
from archcompress.space import Candidate

TEACHER_PARAMS = 1000
TEACHER_ACC = 0.8


def result(params: int | None, accuracy: float | None, status: str = "ok", name: str = "") -> Result:
    return Result(
        candidate=Candidate(keep=(True,), ratios=(0.5,)),
        candidate_hash=name or f"{status}-{params}-{accuracy}",
        status=status,
        val_accuracy=accuracy,
        params=params,
        macs=params,
        train_seconds=1.0,
        seed=0,
        from_store=False,
    )


def test_compression_is_relative_parameter_reduction() -> None:
    assert compression(250, 1000) == 0.75
    assert compression(1000, 1000) == 0.0


@pytest.mark.parametrize(
    ("accuracy", "params", "expected"),
    [
        (0.8, 500, 0.75),  # half the parameters, the teacher's accuracy: C = 0.5, C(2 - C) = 0.75
        (0.4, 500, 0.375),  # half the accuracy halves the reward
        (0.8, 1000, 0.0),  # no compression, no reward
        (0.8, 100, 0.99),  # C = 0.9: 0.9 * 1.1
        (0.8, 0, 1.0),  # the limit: everything removed at the teacher's accuracy
        (1.0, 250, 0.9375 * 1.25),  # a student more accurate than the teacher earns more than C(2 - C)
    ],
)
def test_n2n_reward_values(accuracy: float, params: int, expected: float) -> None:
    assert n2n_reward(accuracy, params, TEACHER_ACC, TEACHER_PARAMS) == pytest.approx(expected)


def test_reward_grows_with_compression_at_equal_accuracy() -> None:
    rewards = [n2n_reward(0.8, params, TEACHER_ACC, TEACHER_PARAMS) for params in (900, 500, 200, 50)]
    assert rewards == sorted(rewards) and len(set(rewards)) == 4


def test_result_reward_is_minus_one_for_anything_that_did_not_train() -> None:
    assert result_reward(result(500, 0.8), TEACHER_ACC, TEACHER_PARAMS) == pytest.approx(0.75)
    for bad in (result(500, None, "diverged"), result(None, None, "invalid"), result(None, None, "failed: x")):
        assert result_reward(bad, TEACHER_ACC, TEACHER_PARAMS) == INVALID_REWARD == -1.0
