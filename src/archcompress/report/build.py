"""``report.json``: built here, once, for the complete run and for the partial report of an interrupted one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from archcompress.constraints import ConstraintCheck, Constraints
from archcompress.evaluate import Result, StoredResult
from archcompress.search.choice import meets
from archcompress.search.reward import TeacherStats
from archcompress.version import __version__

TOP_CANDIDATES = 10


@dataclass(frozen=True)
class Row:
    """One evaluated candidate as the report lists it (from a fresh result or a stored row)."""

    candidate_hash: str
    status: str
    val_accuracy: float | None
    params: int | None
    macs: int | None
    latency_ms: float | None = None
    rung: int = 0  # multi-fidelity: the rung of this result (0 without rungs)
    epochs: int | None = None  # epochs trained when it was scored

    @classmethod
    def of(cls, item: Result | StoredResult) -> Row:
        """The row of a search result or of a row of the result store."""
        if isinstance(item, Result):
            return cls(item.candidate_hash, item.status, item.val_accuracy, item.params, item.macs, item.latency_ms,
                       item.rung, item.epochs)  # fmt: skip
        latency = item.extra.get("latency_ms")
        return cls(item.key.candidate_hash, item.status, item.val_accuracy, item.params, item.macs,
                   float(latency) if latency is not None else None, int(item.extra.get("rung", 0)),
                   item.extra.get("epochs"))  # fmt: skip


@dataclass(frozen=True)
class RunFacts:
    """What every report of a run states, complete or not."""

    method: str
    dataset: str | None
    teacher: dict[str, Any]  # checkpoint, sha256, params, val_accuracy (and model, macs, test_accuracy when known)
    stats: TeacherStats  # what rewards compare with
    constraints: Constraints
    objective: str  # what the reward's compression term measures
    budget: int
    seconds: float
    invocations: int


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    """How many evaluations ended in each kind of status (``failed: reason`` counts as ``failed``)."""
    return dict(Counter(status.split(":")[0] for status in statuses))


def evaluation_entry(row: Row, facts: RunFacts, chosen: str | None = None) -> dict[str, Any]:
    """A row as ``report.json`` lists it: figures, reward, whether it meets every constraint, whether chosen."""
    entry: dict[str, Any] = {"candidate_hash": row.candidate_hash, "status": row.status,
                             "val_accuracy": row.val_accuracy, "params": row.params, "macs": row.macs,
                             "reward": facts.stats.reward(row, facts.objective)}  # fmt: skip
    if row.latency_ms is not None:
        entry["latency_ms"] = row.latency_ms
    if row.epochs is not None:
        entry.update(rung=row.rung, epochs=row.epochs)
    entry["meets_constraints"] = meets(row, facts.constraints, facts.stats.params)
    entry["chosen"] = chosen is not None and row.candidate_hash == chosen
    return entry


def top_candidates(rows: Sequence[Row], facts: RunFacts, chosen: str | None = None) -> list[dict[str, Any]]:
    """The trained candidates with the best rewards, each once at its highest rung (which ranks first), the chosen
    one always included."""
    unique: dict[str, Row] = {}
    for row in rows:
        if row.status == "ok" and (row.candidate_hash not in unique or row.rung >= unique[row.candidate_hash].rung):
            unique[row.candidate_hash] = row
    entries = sorted((evaluation_entry(row, facts, chosen) for row in unique.values()),
                     key=lambda e: (-e.get("rung", 0), -e["reward"]))  # fmt: skip
    top = entries[:TOP_CANDIDATES]
    if chosen is not None and not any(e["chosen"] for e in top):
        top += [e for e in entries if e["chosen"]]
    return top


def _common(facts: RunFacts, complete: bool) -> dict[str, Any]:
    return {
        "archcompress_version": __version__,
        "complete": complete,
        "method": facts.method,
        "dataset": facts.dataset,
        "teacher": facts.teacher,
    }


def partial_report(facts: RunFacts, rows: Sequence[Row], stage: str, resume_command: str) -> dict[str, Any]:
    """The report of an unfinished run: settings, teacher and the evaluations stored so far."""
    evaluations = [evaluation_entry(row, facts) for row in rows]
    return {
        **_common(facts, complete=False),
        "interrupted": stage,
        "resume": resume_command,
        "target": {"ratio": facts.constraints.target, "met": None},
        "constraints": [
            {"name": name, "limit": limit, "value": None, "met": None} for name, limit in facts.constraints.limits()
        ],
        "search": {
            "evaluations": len(rows),
            "statuses": status_counts(row.status for row in rows),
            "budget": facts.budget,
        },
        "evaluations": evaluations,
        "top_candidates": top_candidates(rows, facts),
        "seconds": facts.seconds,
        "invocations": facts.invocations,
    }


def complete_report(
    facts: RunFacts,
    results: Sequence[Result],
    *,
    student: dict[str, Any],
    final_checks: Sequence[ConstraintCheck],
    chosen_hash: str | None,
    why: str,
    search_seconds: float,
) -> dict[str, Any]:
    """The report of a finished run. ``student`` holds the final figures (params, macs, val/test accuracy ...),
    ``final_checks`` the constraints applied to the distilled student."""
    rows = [Row.of(r) for r in results]
    target_check = next((c for c in final_checks if c.name == "target"), None)
    teacher = facts.teacher
    return {
        **_common(facts, complete=True),
        "student": student,
        "compression": {
            "params": teacher["params"] / student["params"],
            "macs": teacher["macs"] / max(student["macs"], 1),
        },
        "target": {"ratio": facts.constraints.target, "met": target_check.met if target_check else True},
        "constraints": [check.to_dict() for check in final_checks],
        "chosen": {"candidate_hash": chosen_hash, "why": why},
        "search": {
            "evaluations": len({r.candidate_hash for r in results}),  # distinct candidates: the budget
            "proposals": len(results),
            "statuses": status_counts(r.status for r in results),
            "from_store": sum(r.from_store for r in results),
            "budget": facts.budget,
            "seconds": search_seconds,
        },
        "top_candidates": top_candidates(rows, facts, chosen_hash),
        "seconds": facts.seconds,  # wall time, summed over the invocations of a resumed run
        "invocations": facts.invocations,
    }
