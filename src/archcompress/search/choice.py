"""The choice of the student to distil from a search's results: the best reward among the candidates that
meet every constraint, or, when none does, the one that comes closest to meeting them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from archcompress.constraints import ConstraintCheck, Constraints
from archcompress.evaluate import Result
from archcompress.search.reward import Figures, TeacherStats


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, its constraint checks (on its search figures) and one sentence of why."""

    result: Result
    checks: list[ConstraintCheck]
    met: bool  # every constraint met
    why: str


def candidate_checks(result: Figures, constraints: Constraints, teacher_params: int) -> list[ConstraintCheck]:
    """The constraints applied to an evaluated candidate (its search val accuracy for ``min_accuracy``)."""
    return constraints.check(
        teacher_params=teacher_params,
        params=result.params,
        macs=result.macs,
        latency_ms=result.latency_ms,
        val_accuracy=result.val_accuracy,
    )


def meets(result: Figures, constraints: Constraints, teacher_params: int) -> bool:
    """Whether a trained candidate meets every constraint."""
    return result.status == "ok" and all(check.met for check in candidate_checks(result, constraints, teacher_params))


def promotion_score(
    teacher: TeacherStats, constraints: Constraints, objective: str = "params"
) -> Callable[[Result], float | None]:
    """How multi-fidelity evaluation ranks a rung: the reward of a trained candidate that meets every limit on its
    size (the accuracy floor is left to the later rungs); None, never promoted, for the others."""

    def score(result: Result) -> float | None:
        if not result.ok:
            return None
        checks = candidate_checks(result, constraints, teacher.params)
        if not all(check.met for check in checks if check.name != "min_accuracy"):
            return None
        return teacher.reward(result, objective)

    return score


def reward_name(objective: str) -> str:
    """How the ranking reward is named in the report's sentences."""
    return "paper reward" + ("" if objective == "params" else f" on {objective}")


def ranked_meeting(
    results: Sequence[Result], teacher: TeacherStats, constraints: Constraints, objective: str = "params"
) -> list[Result]:
    """The trained candidates that meet every constraint, each once, the highest fidelity (rung) first, then the
    best reward (ties: fewer params)."""
    meeting = [r for r in _trained(results).values() if meets(r, constraints, teacher.params)]
    return sorted(meeting, key=lambda r: (-r.rung, -teacher.reward(r, objective), r.params or 0))


def _trained(results: Sequence[Result]) -> dict[str, Result]:
    """The candidates that trained to a size and an accuracy, by hash (a repeated proposal counts once)."""
    return {r.candidate_hash: r for r in results if r.ok and r.params}


def choose_student(
    results: Sequence[Result], teacher: TeacherStats, constraints: Constraints, objective: str = "params"
) -> Choice | None:
    """The candidate to distil (None when nothing trained); see the module docstring.

    Ties on reward go to the smaller student. Among candidates that all miss a constraint, the one with the
    fewest missed constraints, then the smallest relative excess, then the best reward is chosen.
    """
    trained = list(_trained(results).values())
    if not trained:
        return None

    def reward(r: Result) -> float:
        return teacher.reward(r, objective)

    meeting = ranked_meeting(results, teacher, constraints, objective)
    measure = reward_name(objective)
    if meeting:
        best = meeting[0]
        if constraints.any:
            why = (f"the highest {measure} ({reward(best):.3f}) of the {len(meeting)} of {len(trained)} trained "
                   f"candidates that meet every constraint ({constraints.describe()})")  # fmt: skip
        else:
            why = f"the highest {measure} ({reward(best):.3f}) of the {len(trained)} trained candidates"
        if any(r.rung for r in trained):
            peers = sum(r.rung == best.rung for r in meeting)
            why += f", among the {peers} scored at its rung {best.rung + 1} (after {best.epochs} epochs)"
        return Choice(best, candidate_checks(best, constraints, teacher.params), True, why)

    checks = {r.candidate_hash: candidate_checks(r, constraints, teacher.params) for r in trained}

    def closeness(r: Result) -> tuple[int, float, int, float]:
        missed = [c for c in checks[r.candidate_hash] if not c.met]
        return (-len(missed), -sum(c.excess() for c in missed), r.rung, reward(r))

    best = max(trained, key=closeness)
    missed = ", ".join(c.name for c in checks[best.candidate_hash] if not c.met)
    why = (f"none of the {len(trained)} trained candidates meets every constraint ({constraints.describe()}); "
           f"this one comes closest (misses {missed})")  # fmt: skip
    return Choice(best, checks[best.candidate_hash], False, why)
