"""Helpers shared by the tests that drive the CLI (importable from any test: ``from cli_helpers import ...``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from archcompress.cli import app

WIDE = {"COLUMNS": "400"}  # no wrapping of long paths or table rows in the output
# A random search of three candidates, each distilled for one epoch on 200 samples: a whole run in seconds
TINY_RANDOM = ["--method", "random", "--budget", "3", "--epochs", "1", "--subset", "200", "--final-epochs", "1",
               "--device", "cpu"]  # fmt: skip


def invoke(args: Sequence[object], *, columns: int = 400, **kwargs: Any) -> Result:
    """Run the CLI in-process on ``args`` (paths and numbers are turned into text) at ``columns`` wide."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)}, **kwargs)


def assert_one_line_error(result: Result, *words: str, after_progress: bool = False, quiet_stdout: bool = False) -> str:
    """Exit code 2 and exactly one ``error:`` line on stderr, containing ``words``, and no traceback.

    The error is the only stderr line, or with ``after_progress`` the last one (a progress bar may come
    first). ``quiet_stdout`` (default): nothing on stdout either. Returns the error line.
    """
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert after_progress or len(lines) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert not quiet_stdout or result.stdout == "", result.stdout
    return errors[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its contents."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def report_of(run: Path) -> dict[str, Any]:
    """A run directory's ``report.json``."""
    return dict(json.loads((run / "report.json").read_text()))
