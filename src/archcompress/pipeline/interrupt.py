"""Ctrl-C during a run: a partial ``report.json`` and ``report.html`` of what is stored, then the interrupt."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from archcompress.evaluate import ResultStore
from archcompress.report import write_report
from archcompress.report.build import Row, RunFacts, partial_report
from archcompress.rundir import REPORT_FILE, REPORT_HTML, STORE_FILE, RunDir

log = logging.getLogger("archcompress")


@dataclass
class Interruption:
    """Writes a partial ``report.json`` (``"complete": false``) and ``report.html`` when Ctrl-C stops a run.

    The report lists every evaluation in the run's store (what ``--resume`` reuses); the interrupt is not
    swallowed, so the CLI still exits with code 130. ``stage`` is what was running; None once the complete
    report is written.
    """

    run: RunDir
    facts: RunFacts
    stage: str | None = "search"

    def __enter__(self) -> Interruption:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None or not issubclass(kind, KeyboardInterrupt) or self.stage is None:
            return
        try:
            self.run.write_json(REPORT_FILE, self.partial_report())
            log.warning(
                "interrupted during the %s: partial report in %s; continue with `archcompress compress --resume "
                "--out %s`", self.stage, self.run.file(REPORT_FILE), self.run.path, extra={"console": True},
            )  # fmt: skip
            write_report([self.run.path], self.run.file(REPORT_HTML), measure=False)
        except Exception as exc:  # e.g. a full disk: the interrupt, not this, is what the user must see
            log.warning("interrupted; the partial report could not be written (%s)", exc)

    def partial_report(self) -> dict[str, Any]:
        """The report of the unfinished run (see :func:`archcompress.report.build.partial_report`)."""
        rows = ResultStore(self.run.file(STORE_FILE)).query(teacher_hash=self.facts.teacher["sha256"])
        facts = replace(self.facts, seconds=self.run.elapsed_seconds(), invocations=self.run.invocations)
        resume = f"archcompress compress --resume --out {self.run.path}"
        return partial_report(facts, [Row.of(row) for row in rows], self.stage or "search", resume)
