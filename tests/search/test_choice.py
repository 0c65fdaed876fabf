"""The choice of the final student: the best reward among the candidates that meet every constraint."""

from __future__ import annotations

import pytest

from archcompress.constraints import Constraints
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.search import TeacherStats, choose_student, result_reward
from archcompress.space import Candidate

TEACHER = TeacherStats(accuracy=0.8, params=1000, macs=10_000, latency_ms=10.0)


def result(
    params: int | None,
    accuracy: float | None,
    status: str = "ok",
    name: str = "",
    macs: int | None = None,
    latency_ms: float | None = None,
) -> Result:
    return Result(
        candidate=Candidate(keep=(True,), ratios=(0.5,)),
        candidate_hash=name or f"{status}-{params}-{accuracy}",
        status=status,
        val_accuracy=accuracy,
        params=params,
        macs=macs if macs is not None else (params or 0) * 10,
        train_seconds=1.0,
        seed=0,
        from_store=False,
        latency_ms=latency_ms,
    )


def chosen(results: list[Result], constraints: Constraints = Constraints(), objective: str = "params") -> str:
    choice = choose_student(results, TEACHER, constraints, objective)
    assert choice is not None
    return choice.result.candidate_hash


def test_without_constraints_the_highest_reward_wins() -> None:
    results = [
        result(900, 0.8, name="big"),  # reward 0.19
        result(500, 0.8, name="half"),  # 0.75
        result(100, 0.4, name="tiny-bad"),  # 0.495
        result(None, None, "invalid", name="invalid"),
        result(50, None, "diverged", name="diverged"),
    ]
    choice = choose_student(results, TEACHER, Constraints())
    assert choice is not None and choice.result.candidate_hash == "half" and choice.met
    assert "highest paper reward" in choice.why and "5 trained" not in choice.why


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        (Constraints(target=4.0), "fifth"),  # half (2x) misses it
        (Constraints(target=10.0), "tenth"),  # exactly 10x meets it
        (Constraints(max_params=300), "fifth"),
        (Constraints(max_macs=1500), "tenth"),  # macs are params * 10 here
        (Constraints(min_accuracy=0.6), "half"),
        (Constraints(max_latency_ms=3.0), "fifth"),
    ],
    ids=["target", "target-exact", "max_params", "max_macs", "min_accuracy", "max_latency_ms"],
)
def test_each_constraint_is_honoured(constraints: Constraints, expected: str) -> None:
    results = [
        result(500, 0.8, name="half", latency_ms=5.0),  # reward 0.75
        result(200, 0.5, name="fifth", latency_ms=2.0),  # 0.6
        result(100, 0.2, name="tenth", latency_ms=1.0),  # 0.2475
    ]
    choice = choose_student(results, TEACHER, constraints)
    assert choice is not None and choice.result.candidate_hash == expected
    assert choice.met and all(check.met for check in choice.checks)
    assert constraints.describe() in choice.why


def test_a_mac_limit_is_not_traded_for_reward() -> None:
    # the best reward on params is over the MAC limit: it must not be chosen
    results = [result(100, 0.8, name="many-macs", macs=50_000), result(400, 0.7, name="few-macs", macs=2_000)]
    assert chosen(results) == "many-macs"
    assert chosen(results, Constraints(max_macs=5_000)) == "few-macs"


def test_when_none_meets_every_constraint_the_closest_is_chosen_and_said() -> None:
    results = [
        result(500, 0.8, name="half"),  # misses target 20x and max_macs
        result(200, 0.5, name="fifth", macs=900),  # misses only the target
    ]
    choice = choose_student(results, TEACHER, Constraints(target=20.0, max_macs=1000))
    assert choice is not None and choice.result.candidate_hash == "fifth" and not choice.met
    assert "comes closest" in choice.why and "target" in choice.why


def test_the_objective_changes_the_ranking() -> None:
    results = [result(100, 0.8, name="few-params", macs=9_000), result(600, 0.8, name="few-macs", macs=1_000)]
    assert chosen(results, objective="params") == "few-params"
    assert chosen(results, objective="macs") == "few-macs"


def test_reward_ties_go_to_fewer_params() -> None:
    # 0.75 * 0.5 == 0.9375 * 0.4 == 0.375 exactly in floating point
    teacher = TeacherStats(1.0, 1000, 10_000)
    results = [result(500, 0.5, name="half"), result(250, 0.4, name="quarter"), result(900, 0.1, name="big")]
    assert result_reward(results[0], 1.0, 1000) == result_reward(results[1], 1.0, 1000) == 0.375
    for ordered in (results, results[::-1]):
        choice = choose_student(ordered, teacher, Constraints())
        assert choice is not None and choice.result.candidate_hash == "quarter"


def test_nothing_trained_gives_none() -> None:
    results = [result(None, None, "invalid"), result(100, None, "diverged"), result(None, None, "failed: boom")]
    assert choose_student(results, TEACHER, Constraints()) is None
    assert choose_student([], TEACHER, Constraints(target=2.0)) is None


@pytest.mark.parametrize(
    "constraints",
    [Constraints(target=1.0), Constraints(max_params=0), Constraints(max_macs=-1), Constraints(max_latency_ms=0.0),
     Constraints(min_accuracy=1.5), Constraints(target=float("inf"))],
)  # fmt: skip
def test_impossible_limits_are_refused(constraints: Constraints) -> None:
    with pytest.raises(ArchcompressError, match="--"):
        constraints.validate()
