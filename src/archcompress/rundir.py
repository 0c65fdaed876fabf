"""The run directory: created once, locked while a run uses it, never overwritten without ``--resume``."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from archcompress.errors import ArchcompressError
from archcompress.runtime import atomic_write_text

CONFIG_FILE = "config.yaml"
STORE_FILE = "store.sqlite"
STUDENT_DIR = "student"
REPORT_FILE = "report.json"
REPORT_HTML = "report.html"
LOG_FILE = "log.txt"
LOCK_FILE = ".lock"
POLICIES_DIR = "policies"
CODEC_DIR = "codec"  # the embedding method's trained encoder-decoder
PRIOR_FILE = "prior.json"  # the embedding method's earlier evaluations, by candidate hash
TENSORBOARD_DIR = "tb"
RUNGS_DIR = "rungs"  # candidates' weights between rungs (multi-fidelity), removed when the run completes
ELAPSED_FILE = "elapsed.json"  # wall seconds of each invocation, so a resumed run reports its whole time


class RunDir:
    """A run directory held by this process (an exclusive lock file guards against a second run)."""

    def __init__(self, path: str | Path, *, resume: bool, started: float | None = None) -> None:
        """Create (or, with ``resume``, reopen) the directory; ``started``: this invocation's perf_counter start."""
        self.path = Path(path)
        self._started = time.perf_counter() if started is None else started
        if not resume:
            check_new_run_dir(self.path)
        if resume and not (self.path / CONFIG_FILE).is_file():
            raise ArchcompressError(
                f"--resume {self.path}: no {CONFIG_FILE} there, so it is not a run directory to continue"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        # "a": a run refused below must not truncate the holder's pid; held until close()
        self._lock: IO[str] | None = open(self.path / LOCK_FILE, "a")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise ArchcompressError(
                f"{self.path} is in use by another archcompress run (lock file {LOCK_FILE}): wait for it to "
                "finish or use another --out"
            ) from None
        self._lock.truncate(0)
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        self._log_handler = logging.FileHandler(self.path / LOG_FILE)
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("archcompress")
        logger.setLevel(logging.INFO)
        logger.addHandler(self._log_handler)
        self._earlier = self._read_earlier_invocations() if resume else []

    @property
    def invocations(self) -> int:
        """How many times this run was started: 1, plus one per ``--resume``."""
        return len(self._earlier) + 1

    def elapsed_seconds(self) -> float:
        """Wall time of the whole run: the earlier invocations (as last saved) plus this one so far."""
        return sum(self._earlier) + self._this_invocation_seconds()

    def save_elapsed(self) -> None:
        """Record this invocation's time so far; a later ``--resume`` adds it to its own (called as work is done)."""
        self.write_json(ELAPSED_FILE, {"invocation_seconds": [*self._earlier, self._this_invocation_seconds()]})

    def _this_invocation_seconds(self) -> float:
        return time.perf_counter() - self._started

    def _read_earlier_invocations(self) -> list[float]:
        path = self.file(ELAPSED_FILE)
        if not path.is_file():  # a run made before archcompress recorded it, or killed before its first save
            return []
        try:
            seconds = json.loads(path.read_text())["invocation_seconds"]
            return [float(s) for s in seconds]
        except (ValueError, KeyError, TypeError):
            log = logging.getLogger("archcompress")
            log.warning("%s is unreadable: the report's time counts this invocation only", path)
            return []

    def file(self, name: str) -> Path:
        """A path inside the run directory."""
        return self.path / name

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        """Write ``name`` atomically as indented JSON."""
        target = self.file(name)
        atomic_write_text(target, json.dumps(data, indent=1) + "\n")
        return target

    def close(self) -> None:
        """Record the elapsed time, release the lock and the log file."""
        if self._lock is not None:
            try:
                self.save_elapsed()
            except OSError as exc:  # e.g. a full disk: closing must still release the lock
                logging.getLogger("archcompress").warning("could not record the run's time (%s)", exc)
        logging.getLogger("archcompress").removeHandler(self._log_handler)
        self._log_handler.close()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_new_run_dir(path: Path) -> None:
    """Refuse ``path`` for a new run unless it does not exist or is an empty directory."""
    if path.exists() and not _is_empty_dir(path):
        raise ArchcompressError(
            f"--out {path} already exists: pass --resume to continue that run, or choose a new --out "
            "(an existing run directory is never overwritten)"
        )


def _is_empty_dir(path: Path) -> bool:
    """An empty directory made beforehand (e.g. by a job scheduler) is a fine place for a new run."""
    return path.is_dir() and not any(path.iterdir())
