"""Faults from outside: a full disk during a write, damaged files in a run directory, a store at its size limit.

A worker process killed mid-task is covered by ``tests/evaluate/test_worker_death.py``; a second run on a locked
run directory by ``tests/test_compress.py::test_a_locked_run_directory_is_refused`` and
``tests/reliability/test_interrupt.py::test_ctrl_c_mid_search_writes_a_partial_report_exits_130_and_resumes``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
import torch

import archcompress.runtime
from archcompress.checkpoint import TeacherMeta, load_teacher, save_teacher
from archcompress.errors import ArchcompressError
from archcompress.evaluate import ResultStore
from archcompress.evaluate.store import ResultKey, StoredResult
from archcompress.models import create_model
from archcompress.runtime import atomic_write_text
from archcompress.space import CompressionSpace, load_student, save_student
from cli_helpers import assert_one_line_error, invoke, snapshot

TINY = ["--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu", "--method", "random"]


def temporary_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# --- a full disk ---------------------------------------------------------------------------------------------


class FullDisk:
    """A file object that accepts ``room`` bytes, then fails every write with ENOSPC (like a disk filling up)."""

    def __init__(self, handle: IO[Any], room: int) -> None:
        self._handle = handle
        self._room = room

    def write(self, data: Any) -> int:
        size = len(data)
        if size > self._room:
            self._handle.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= size
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


@pytest.fixture
def disk_full_for(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], list[str]]:
    """``disk_full_for(name, room)``: atomic writes of files called ``name`` run out of space after ``room`` bytes.

    Returns the list of temporary files that were written to (to check they are gone afterwards).
    """
    real_fdopen = os.fdopen
    used: list[str] = []

    def arm(name: str, room: int) -> list[str]:
        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            handle = real_fdopen(fd, *args, **kwargs)
            path = os.readlink(f"/proc/self/fd/{fd}")
            if Path(path).name.startswith(f".{name}."):  # atomic_open's temporary file for ``name``
                used.append(path)
                return FullDisk(handle, room)
            return handle

        monkeypatch.setattr(archcompress.runtime.os, "fdopen", fdopen)
        return used

    return arm


@pytest.mark.parametrize("room", [0, 10], ids=["nothing-written", "partly-written"])
def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, disk_full_for: Callable[[str, int], list[str]], room: int
) -> None:
    target = tmp_path / "report.json"
    atomic_write_text(target, '{"old": true}\n')
    used = disk_full_for("report.json", room)
    with pytest.raises(ArchcompressError, match=r"cannot write .*report\.json \(No space left on device\)") as info:
        atomic_write_text(target, json.dumps({"new": list(range(100))}))
    assert "\n" not in str(info.value) and "unchanged" in str(info.value)
    assert used and not Path(used[0]).exists()
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(
    tmp_path: Path, disk_full_for: Callable[[str, int], list[str]]
) -> None:
    path = tmp_path / "teacher.pt"
    meta = TeacherMeta("lenet5", {}, (1, 8, 8), 10, "digits")
    save_teacher(path, create_model("lenet5", (1, 8, 8), 10), meta)
    before = path.read_bytes()
    disk_full_for("teacher.pt", 3000)
    # torch.save turns the failing write into its own RuntimeError, so the message is torch's (see docs)
    with pytest.raises((ArchcompressError, RuntimeError)):
        save_teacher(path, create_model("lenet5", (1, 8, 8), 10), meta)
    assert path.read_bytes() == before
    assert load_teacher(path).meta == meta
    assert temporary_files(tmp_path) == []


def test_a_full_disk_while_saving_a_student_never_pairs_old_and_new_files(
    tmp_path: Path, disk_full_for: Callable[[str, int], list[str]]
) -> None:
    model = create_model("lenet5", (1, 8, 8), 10)
    space = CompressionSpace.from_model(model, (1, 8, 8))
    folder = tmp_path / "student"
    save_student(space.build(space.uniform_candidate(0.5)), folder)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        expected = load_student(folder)(x)

    disk_full_for("model.pt", 100)  # the weights fail: nothing changed
    with pytest.raises(ArchcompressError, match="No space left"):
        save_student(space.build(space.uniform_candidate(0.25)), folder)
    with torch.no_grad():
        assert torch.equal(load_student(folder)(x), expected)

    disk_full_for("arch.json", 100)  # new weights, old arch.json: refused as a pair, never loaded wrongly
    with pytest.raises(ArchcompressError, match="No space left"):
        save_student(space.build(space.uniform_candidate(0.25)), folder)
    with pytest.raises(ArchcompressError, match=r"does not match arch\.json"):
        load_student(folder)
    assert temporary_files(tmp_path) == []


@pytest.fixture(scope="module")
def finished_run(teacher: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished random-search run (budget 2); tests that damage it work on a copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = invoke(["compress", teacher, "--out", out, "--budget", "2", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


@pytest.mark.slow
def test_a_full_disk_while_writing_the_report_is_one_line_and_the_run_resumes(
    teacher: Path,
    home: Path,
    tmp_path: Path,
    disk_full_for: Callable[[str, int], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = tmp_path / "run"
    disk_full_for("report.json", 50)
    result = invoke(["compress", teacher, "--out", run, "--budget", "2", *TINY])
    assert_one_line_error(result, "report.json", "No space left on device", after_progress=True)
    assert not (run / "report.json").exists() and temporary_files(run) == []
    assert len(ResultStore(run / "store.sqlite")) == 2  # every evaluation was kept

    monkeypatch.undo()  # space again
    result = invoke(["compress", "--resume", "--out", run])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((run / "report.json").read_text())
    assert report["complete"] is True and report["search"]["from_store"] == report["search"]["proposals"] == 2


def fill_store(path: Path, count: int, start: int = 0) -> None:
    store = ResultStore(path)
    for index in range(start, start + count):
        key = ResultKey("teacher", "digits", "budget", 0, f"{index:016x}")
        store.put(StoredResult(key, "ok", 0.5, 1000, 10, 1.0, "random", {"keep": [True] * 50}, [0.1] * 200))


def test_a_full_store_refuses_the_row_and_keeps_every_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own "disk full" (its page limit, reached for real): one clear error, the file stays sound."""
    path = tmp_path / "store.sqlite"
    fill_store(path, 5)
    with closing(sqlite3.connect(path)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    real_connect = ResultStore._connect

    def limited(self: ResultStore) -> Iterator[sqlite3.Connection]:
        with real_connect(self) as db:
            db.execute(f"PRAGMA max_page_count = {pages}")  # no room for another page: a full disk for SQLite
            yield db

    with monkeypatch.context() as patch:
        patch.setattr(ResultStore, "_connect", contextmanager(limited))
        with pytest.raises(ArchcompressError, match=r"writing a result failed .*full") as info:
            fill_store(path, 50, start=5)
    assert "\n" not in str(info.value)
    store = ResultStore(path)
    stored = {r.key.candidate_hash for r in store.query()}
    assert {f"{i:016x}" for i in range(5)} <= stored  # every earlier row is still there
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    fill_store(path, 1, start=100)  # with room again, writing goes on
    assert len(store) == len(stored) + 1


# --- damaged files in a run directory -------------------------------------------------------------------------


def damage(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "one-byte": b"\x00",
        "garbage": bytes(range(256)) * 8,
        "flipped": data[:100] + bytes(b ^ 0xFF for b in data[100:400]) + data[400:],
    }[how]
    path.write_bytes(damaged)
    return damaged


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated", "one-byte", "garbage", "flipped"])
def test_a_damaged_run_store_stops_resume_with_one_line_and_is_not_modified(
    finished_run: Path, tmp_path: Path, how: str, unfinished: Callable[[Path], Path]
) -> None:
    run = unfinished(copy_run(finished_run, tmp_path / "run"))  # a finished run's --resume reads nothing
    damaged = damage(run / "store.sqlite", how)
    result = invoke(["compress", "--resume", "--out", run])
    assert_one_line_error(result, "store.sqlite", "corrupt")
    assert (run / "store.sqlite").read_bytes() == damaged


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "flipped"])
def test_a_damaged_teacher_checkpoint_is_one_line_and_creates_nothing(tmp_path: Path, how: str) -> None:
    bad = tmp_path / "teacher.pt"
    save_teacher(bad, create_model("lenet5", (1, 8, 8), 10), TeacherMeta("lenet5", {}, (1, 8, 8), 10, "digits"))
    damage(bad, how)
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", bad, "--out", out, "--budget", "2", *TINY]), "teacher.pt")
    assert not out.exists()
    assert_one_line_error(invoke(["inspect", bad]), "teacher.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "text"),
    [
        ("truncated", None),
        ("empty", None),
        ("garbage", None),
        ("bad-yaml", "budget: [1, 2\n"),
        ("bad-type", "budget: many\n"),
        ("bad-value", "budget: -5\n"),
        ("not-a-mapping", "- 1\n- 2\n"),
    ],
)
def test_a_damaged_config_stops_resume_with_one_line(
    finished_run: Path, tmp_path: Path, how: str, text: str | None
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    config = run / "config.yaml"
    if text is None:
        damage(config, how)
    else:
        config.write_text(config.read_text() + text if how == "bad-type" else text)
    before = snapshot(run)
    assert_one_line_error(invoke(["compress", "--resume", "--out", run]), "config")
    assert snapshot(run) == before
    assert_one_line_error(invoke(["compress", "--config", config, "--out", tmp_path / "new"]), "config")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "how", "words"),
    [
        ("arch.json", "truncated", ["arch.json"]),
        ("arch.json", "garbage", ["arch.json"]),
        ("arch.json", "empty", ["arch.json"]),
        ("model.pt", "truncated", ["model.pt", "does not match"]),
        ("model.pt", "empty", ["model.pt", "does not match"]),
    ],
)
def test_a_damaged_student_is_one_line_for_export(
    finished_run: Path, tmp_path: Path, name: str, how: str, words: list[str]
) -> None:
    run = copy_run(finished_run, tmp_path / "run")
    damage(run / "student" / name, how)
    assert_one_line_error(invoke(["export", run, "--format", "onnx"]), *words)
    with pytest.raises(ArchcompressError):
        load_student(run / "student")
    # the HTML report needs only report.json and the store (the student's figures are recorded there)
    result = invoke(["report", run, "--out", tmp_path / "report.html"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Complete run" in (tmp_path / "report.html").read_text()
