"""The SQLite result store: round trip, queries, concurrent writers, and refusing damaged files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from archcompress.errors import ArchcompressError
from archcompress.evaluate import ResultKey, ResultStore, StoredResult


def _result(candidate: str, accuracy: float | None = 0.9, status: str = "ok", seed: int = 0) -> StoredResult:
    return StoredResult(
        key=ResultKey("teacher", "digits", "l2:epochs=1", seed, candidate),
        status=status,
        val_accuracy=accuracy,
        params=1234,
        macs=5678,
        train_seconds=1.5,
        method="random",
        candidate={"keep": [1, 0, 1], "ratios": [0.5]},
        features=[[0.1, 0.2], [0.3, 0.4]],
        extra={"note": "x"},
    )


def test_round_trip_and_missing_key(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "store.sqlite")
    stored = _result("c1")
    store.put(stored)
    got = store.get(stored.key)
    assert got is not None
    assert got.key == stored.key and got.val_accuracy == 0.9 and got.params == 1234 and got.macs == 5678
    assert got.candidate == stored.candidate and got.features == stored.features and got.extra == {"note": "x"}
    assert got.created > 0
    assert store.get(ResultKey("teacher", "digits", "l2:epochs=1", 1, "c1")) is None  # another seed
    assert len(store) == 1


def test_replace_and_query_filters(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "store.sqlite")
    store.put(_result("a", 0.5))
    store.put(_result("a", 0.7))  # the same key replaces, never duplicates
    store.put(_result("b", None, status="invalid"))
    store.put(_result("c", 0.8, seed=1))
    assert len(store) == 3
    assert [r.key.candidate_hash for r in store.query(seed=0)] == ["a", "b"]
    assert store.get(_result("a").key).val_accuracy == 0.7  # type: ignore[union-attr]
    assert [r.key.candidate_hash for r in store.query(statuses=["ok"])] == ["a", "c"]
    assert store.query(teacher_hash="other") == []
    # a second store object on the same file (another run) sees everything
    assert len(ResultStore(tmp_path / "store.sqlite").query()) == 3


_WRITER = """
import sys
from archcompress.evaluate import ResultKey, ResultStore, StoredResult
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = ResultStore(path)
for index in range(count):
    key = ResultKey("teacher", "digits", "l2:epochs=1", 0, f"w{worker}-{index}")
    store.put(StoredResult(key, "ok", index / count, 1, 1, 0.1, "random", {"i": index}))
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "store.sqlite")
    ResultStore(path)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, path, str(w), "60"], stderr=subprocess.PIPE) for w in range(2)
    ]
    for process in writers:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    results = ResultStore(path).query()
    assert len(results) == 120
    assert {r.key.candidate_hash for r in results} == {f"w{w}-{i}" for w in range(2) for i in range(60)}


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(ArchcompressError, match="corrupt or not an SQLite database"):
        ResultStore(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_and_other_schema_version_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(ArchcompressError, match="not an archcompress result store"):
        ResultStore(foreign)
    with sqlite3.connect(foreign) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("people",)]

    newer = tmp_path / "newer.sqlite"
    ResultStore(newer)
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE store_meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(ArchcompressError, match="schema version 99"):
        ResultStore(newer)
