"""The run directory: its lock, its refusal to overwrite, and the run's wall time across ``--resume``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from archcompress import rundir
from archcompress.errors import ArchcompressError
from archcompress.rundir import CONFIG_FILE, ELAPSED_FILE, RunDir


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The run directory's perf_counter, set by the test (``clock[0]`` is "now" in seconds)."""
    now = [100.0]
    monkeypatch.setattr(rundir, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def open_run(path: Path, *, resume: bool) -> RunDir:
    run = RunDir(path, resume=resume)
    if not resume:
        run.file(CONFIG_FILE).write_text("method: random\n")  # what makes it a run directory to resume
    return run


def test_a_resumed_run_adds_the_time_of_every_earlier_invocation(tmp_path: Path, clock: list[float]) -> None:
    path = tmp_path / "run"
    with open_run(path, resume=False) as first:
        clock[0] += 30.0
        assert first.elapsed_seconds() == 30.0 and first.invocations == 1
    clock[0] += 500.0  # the time between invocations is not the run's
    with open_run(path, resume=True) as second:
        clock[0] += 12.0
        assert second.invocations == 2
        assert second.elapsed_seconds() == 42.0
    with open_run(path, resume=True) as third:
        clock[0] += 1.0
        assert third.invocations == 3 and third.elapsed_seconds() == 43.0
    assert json.loads((path / ELAPSED_FILE).read_text()) == {"invocation_seconds": [30.0, 12.0, 1.0]}


def test_a_killed_invocation_keeps_the_time_it_saved_last(tmp_path: Path, clock: list[float]) -> None:
    path = tmp_path / "run"
    first = open_run(path, resume=False)
    clock[0] += 20.0
    first.save_elapsed()  # what compress does after every evaluation
    clock[0] += 7.0  # work after the last save is lost with the process: never closed
    first._log_handler.close()  # (only so the test leaves no open file; the lock stays as a kill leaves it)
    logging.getLogger("archcompress").removeHandler(first._log_handler)
    assert first._lock is not None
    first._lock.close()  # the kernel drops a killed process's lock
    with open_run(path, resume=True) as second:
        clock[0] += 5.0
        assert second.invocations == 2 and second.elapsed_seconds() == 25.0


def test_the_started_time_of_the_invocation_counts_from_before_the_directory_opened(
    tmp_path: Path, clock: list[float]
) -> None:
    started = clock[0]
    clock[0] += 9.0  # loading the teacher and the data, before the run directory exists
    with RunDir(tmp_path / "run", resume=False, started=started) as run:
        assert run.elapsed_seconds() == 9.0


@pytest.mark.parametrize("content", ["not json", '{"other": 1}', '{"invocation_seconds": ["x"]}'])
def test_an_unreadable_time_file_counts_this_invocation_only_and_says_so(
    tmp_path: Path, clock: list[float], content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run"
    with open_run(path, resume=False):
        clock[0] += 3.0
    (path / ELAPSED_FILE).write_text(content)
    with caplog.at_level(logging.WARNING, logger="archcompress"), open_run(path, resume=True) as run:
        clock[0] += 2.0
        assert run.elapsed_seconds() == 2.0 and run.invocations == 1
    assert f"{path / ELAPSED_FILE} is unreadable" in caplog.text


def test_an_existing_directory_is_not_reopened_without_resume(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with open_run(path, resume=False):
        pass
    with pytest.raises(ArchcompressError, match="already exists: pass --resume"):
        RunDir(path, resume=False)


def test_resume_needs_the_config_of_a_run(tmp_path: Path) -> None:
    with pytest.raises(ArchcompressError, match=r"no config\.yaml there"):
        RunDir(tmp_path, resume=True)


def test_a_second_holder_is_refused(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", resume=False), pytest.raises(ArchcompressError, match="in use by another"):
        RunDir(tmp_path / "run", resume=True)
