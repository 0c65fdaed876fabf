"""SQLite result store: every evaluated candidate, keyed so that nothing is ever trained twice.

Key: (teacher hash, data set, budget, seed, candidate hash). Each row also keeps the candidate's JSON and
feature vectors, because the store is the training set of the architecture-embedding method. WAL mode and
short transactions let several processes write at once; a busy database is retried, not failed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archcompress.errors import ArchcompressError

SCHEMA_VERSION = 1
_MIN_DATABASE_BYTES = 512  # an SQLite database file is empty or at least one page (512 bytes or more)
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    teacher_hash   TEXT NOT NULL,
    dataset        TEXT NOT NULL,
    budget         TEXT NOT NULL,
    seed           INTEGER NOT NULL,
    candidate_hash TEXT NOT NULL,
    status         TEXT NOT NULL,
    val_accuracy   REAL,
    params         INTEGER,
    macs           INTEGER,
    train_seconds  REAL,
    method         TEXT NOT NULL DEFAULT '',
    candidate_json TEXT NOT NULL,
    features_json  TEXT NOT NULL DEFAULT '[]',
    extra_json     TEXT NOT NULL DEFAULT '{}',
    created        REAL NOT NULL,
    PRIMARY KEY (teacher_hash, dataset, budget, seed, candidate_hash)
);
CREATE INDEX IF NOT EXISTS results_by_context ON results (teacher_hash, dataset, budget, seed);
"""


@dataclass(frozen=True)
class ResultKey:
    """What makes two evaluations the same: teacher, data set, training budget, seed and candidate."""

    teacher_hash: str
    dataset: str
    budget: str  # a canonical string of the training budget, e.g. "l2:adam:epochs=5:subset=all"
    seed: int
    candidate_hash: str


@dataclass(frozen=True)
class StoredResult:
    """One evaluated candidate as stored."""

    key: ResultKey
    status: str  # ok | invalid | diverged | failed: reason
    val_accuracy: float | None
    params: int | None
    macs: int | None
    train_seconds: float | None
    method: str
    candidate: dict[str, Any]
    features: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


class ResultStore:
    """A SQLite file of evaluated candidates; safe to share between processes and runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_foreign_file()
        with self._connect() as db:
            self._check_or_create(db)

    def _refuse_foreign_file(self) -> None:
        """SQLite takes a one-byte file for an empty database and overwrites it: refuse files too short to be one.

        Only ``stat``: opening and closing the file here would drop the POSIX locks of every SQLite connection this
        process has open on it (SQLite's documented corruption hazard).
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ArchcompressError(f"cannot open result store {self.path} ({exc}): check the path") from exc
        if 0 < size < _MIN_DATABASE_BYTES:
            raise ArchcompressError(
                f"result store {self.path} is corrupt or not an SQLite database (a {size}-byte file, smaller than "
                "a page): move it aside (it was not modified) and start a new one"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise ArchcompressError(f"cannot open result store {self.path} ({exc}): check the path") from exc
        with closing(connection) as db:
            yield db

    def _check_or_create(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "store_meta" not in tables:
                raise ArchcompressError(
                    f"{self.path} is an SQLite file but not an archcompress result store: "
                    "use another path (it was not modified)"
                )
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ArchcompressError(
                    f"result store {self.path} has schema version {row[0]}, this archcompress uses "
                    f"{SCHEMA_VERSION}: use a new store path or the matching archcompress version"
                )
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:  # Value/TypeError: a damaged version row
            raise ArchcompressError(
                f"result store {self.path} is corrupt or not an SQLite database ({exc}): move it aside "
                "(it was not modified) and start a new one"
            ) from exc

    def _retrying(self, action: str, work: Any) -> Any:
        """Run ``work(db)`` in one short transaction, retrying while another process holds the lock."""
        delay = 0.05
        deadline = time.monotonic() + 4 * _BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as db:
                    return work(db)
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise ArchcompressError(f"result store {self.path}: {action} failed ({exc})") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except sqlite3.DatabaseError as exc:
                raise ArchcompressError(f"result store {self.path} is corrupt ({exc}) during {action}") from exc

    def put(self, result: StoredResult) -> None:
        """Insert or replace one result (atomic: a crash leaves either the old row or the new one)."""
        k = result.key
        row = (
            k.teacher_hash, k.dataset, k.budget, k.seed, k.candidate_hash, result.status, result.val_accuracy,
            result.params, result.macs, result.train_seconds, result.method,
            json.dumps(result.candidate, sort_keys=True), json.dumps(result.features),
            json.dumps(result.extra, sort_keys=True), result.created or time.time(),
        )  # fmt: skip

        def work(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR REPLACE INTO results VALUES ({', '.join('?' * len(row))})", row)

        self._retrying("writing a result", work)

    def get(self, key: ResultKey) -> StoredResult | None:
        """The stored result for ``key``, or None if it was never evaluated."""

        def work(db: sqlite3.Connection) -> Any:
            return db.execute(
                "SELECT * FROM results WHERE teacher_hash=? AND dataset=? AND budget=? AND seed=? AND candidate_hash=?",
                astuple_key(key),
            ).fetchone()

        row = self._retrying("reading a result", work)
        return self._decode(row) if row else None

    def query(
        self,
        teacher_hash: str | None = None,
        dataset: str | None = None,
        budget: str | None = None,
        seed: int | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[StoredResult]:
        """All results matching the given fields (None matches anything), oldest first."""
        clauses, values = [], []
        for column, value in (("teacher_hash", teacher_hash), ("dataset", dataset), ("budget", budget), ("seed", seed)):
            if value is not None:
                clauses.append(f"{column}=?")
                values.append(value)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            values.extend(statuses)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""

        def work(db: sqlite3.Connection) -> Any:
            return db.execute(f"SELECT * FROM results{where} ORDER BY created, rowid", values).fetchall()

        return [self._decode(row) for row in self._retrying("reading results", work)]

    def _decode(self, row: Sequence[Any]) -> StoredResult:
        try:
            return _from_row(row)
        except (ValueError, TypeError) as exc:  # a JSON column edited or damaged by hand
            raise ArchcompressError(
                f"result store {self.path} is corrupt (a row of candidate {row[4]!r} cannot be read: {exc}): "
                "move it aside and start a new one"
            ) from exc

    def __len__(self) -> int:
        return int(
            self._retrying("counting results", lambda db: db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        )


def astuple_key(key: ResultKey) -> tuple[Any, ...]:
    """The key's fields in primary-key column order."""
    return tuple(asdict(key).values())


def _from_row(row: Sequence[Any]) -> StoredResult:
    (teacher_hash, dataset, budget, seed, candidate_hash, status, val_accuracy, params, macs, seconds, method,
     candidate_json, features_json, extra_json, created) = row  # fmt: skip
    return StoredResult(
        key=ResultKey(teacher_hash, dataset, budget, int(seed), candidate_hash),
        status=status,
        val_accuracy=val_accuracy,
        params=params,
        macs=macs,
        train_seconds=seconds,
        method=method,
        candidate=json.loads(candidate_json),
        features=json.loads(features_json),
        extra=json.loads(extra_json),
        created=created,
    )
