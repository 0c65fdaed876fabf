"""Runs that die (SIGKILL) or are stopped (Ctrl-C, SIGINT) resume to exactly the run that was never interrupted.

Each test starts the real CLI in a subprocess. To stop it at a known point, the subprocess is started through a
small launcher that makes the N-th candidate training (or the final distillation) hang and write a marker file;
the test then sends the signal. ``--resume`` always runs the plain ``archcompress`` console script. The result
is compared with an uninterrupted run of the same seed in another directory.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archcompress.cli import app
from archcompress.evaluate import ResultStore
from archcompress.rundir import ELAPSED_FILE
from cli_helpers import report_of, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def sigint_not_ignored() -> Iterator[None]:
    """Children inherit an ignored SIGINT (a shell that starts the suite in the background sets it): undo that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


SCRIPT = Path(sys.executable).with_name("archcompress")
COMMON = ["--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu", "--seed", "3"]
INLINE = [*COMMON, "--executor", "inline"]
METHODS = {
    "n2n": ["--method", "n2n", "--budget", "8", "--rollouts", "2"],
    "random": ["--method", "random", "--budget", "4"],
    "embedding": ["--method", "embedding", "--budget", "6", "--seed-candidates", "3", "--round-size", "2"],
}
# Which candidate training hangs (the earlier ones are stored by then): mid-batch for N2N (2 rollouts per
# update), after the codec's first training for the embedding method (3 seed candidates, then rounds of 2).
HANG_AT = {"n2n": 4, "random": 3, "embedding": 5}

LAUNCHER = """
import os, pathlib, sys, time
import importlib
from archcompress.cli import main
final = importlib.import_module("archcompress.pipeline.final")
executors = importlib.import_module("archcompress.evaluate.executors")

marker = pathlib.Path(os.environ["RELIABILITY_MARKER"])
where, count = os.environ["RELIABILITY_HANG"].split(":")
calls = 0

def hanging(real):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == int(count):
            marker.with_suffix(".part").write_text(str(os.getpid()))
            marker.with_suffix(".part").rename(marker)
            time.sleep(600)
        return real(*args, **kwargs)
    return wrapper

if where == "train":  # the count-th candidate training of this process
    executors.run_job = hanging(executors.run_job)
else:  # "final": the final distillation of the chosen student
    final.fit = hanging(final.fit)
sys.argv = ["archcompress", *sys.argv[1:]]
main()
"""


def start_hanging(
    teacher: Path, run: Path, method: str, env: dict[str, str], marker: Path, hang: str
) -> subprocess.Popen[str]:
    """``archcompress compress`` of ``method`` in a subprocess that hangs at ``hang`` ("train:N" or "final:1")."""
    launcher_env = {**env, "RELIABILITY_MARKER": str(marker), "RELIABILITY_HANG": hang}
    args = ["compress", str(teacher), "--out", str(run), *METHODS[method], *INLINE]
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        env=launcher_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def run_script(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    assert SCRIPT.is_file(), f"console script not installed next to {sys.executable}: pip install -e ."
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def store_rows(run: Path) -> dict[str, tuple[float | None, float]]:
    """Candidate hash -> (val accuracy, time the row was written) for every evaluation in the run's store."""
    return {r.key.candidate_hash: (r.val_accuracy, r.created) for r in ResultStore(run / "store.sqlite").query()}


def trained_after_resume(run: Path) -> int:
    """Candidates trained (not taken from the store) by the last ``--resume`` of the run, from its log."""
    log = (run / "log.txt").read_text()
    assert "resuming" in log, log
    tail = log.rsplit("resuming", 1)[1]
    return sum(1 for line in tail.splitlines() if " INFO candidate " in line and "(from store)" not in line)


@pytest.fixture(scope="module")
def reference(teacher: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The uninterrupted run of a method (same seed), made in this process on first use."""
    base = tmp_path_factory.mktemp("reference")

    @functools.cache
    def run(method: str) -> Path:
        out = base / method
        result = CliRunner().invoke(app, ["compress", str(teacher), "--out", str(out), *METHODS[method], *INLINE])
        assert result.exit_code == 0, (result.output, result.exception)
        return out

    return run


def assert_resumed_like(run: Path, reference: Path, stored_before: dict[str, tuple[float | None, float]]) -> None:
    """``run`` (interrupted, then resumed) ended exactly like ``reference`` and retrained nothing it had stored."""
    resumed, expected = report_of(run), report_of(reference)
    assert resumed["complete"] is True
    assert resumed["student"]["candidate_hash"] == expected["student"]["candidate_hash"]
    assert resumed["student"]["test_accuracy"] == expected["student"]["test_accuracy"]
    rows = store_rows(run)
    assert {h: acc for h, (acc, _) in rows.items()} == {h: acc for h, (acc, _) in store_rows(reference).items()}
    # the evaluations finished before the interruption were reused, not trained again (same row, same time)
    assert {h: rows[h] for h in stored_before} == stored_before
    assert resumed["search"]["evaluations"] == expected["search"]["evaluations"] == len(rows)
    assert resumed["search"]["proposals"] == expected["search"]["proposals"]
    assert resumed["search"]["from_store"] >= len(stored_before)
    assert trained_after_resume(run) == len(rows) - len(stored_before)


@pytest.mark.parametrize("method", ["n2n", "random", "embedding"])
def test_sigkill_mid_search_then_resume_gives_the_uninterrupted_run(
    method: str, teacher: Path, reference: Callable[[str], Path], subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "hanging"
    process = start_hanging(teacher, run, method, subprocess_env, marker, f"train:{HANG_AT[method]}")
    wait_until(marker.exists, process, "the run reached the hanging training")
    stored_before = store_rows(run)
    assert len(stored_before) == HANG_AT[method] - 1  # some evaluations are stored, the search is not finished
    process.send_signal(signal.SIGKILL)
    assert finish(process)[0] == -signal.SIGKILL
    assert not (run / "report.json").exists() and not (run / "student").exists()
    killed = json.loads((run / ELAPSED_FILE).read_text())["invocation_seconds"]  # saved at its last evaluation
    assert len(killed) == 1 and killed[0] > 0

    done = run_script(["compress", "--resume", "--out", run], subprocess_env)
    assert done.returncode == 0, done.stderr
    assert_resumed_like(run, reference(method), stored_before)
    # the report's time is the killed invocation's (up to its last evaluation) plus the resumed one's
    report, recorded = report_of(run), json.loads((run / ELAPSED_FILE).read_text())["invocation_seconds"]
    assert report["invocations"] == 2 and recorded[0] == killed[0]
    assert killed[0] < report["seconds"] <= sum(recorded)


def count_rows(store: Path) -> int:
    """Rows in a store that another process is writing, read-only (never creates or changes the file)."""
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0.1)) as db:  # `with db` never closes
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_at_an_unplanned_moment_then_resume_gives_the_uninterrupted_run(
    teacher: Path, reference: Callable[[str], Path], subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """No launcher: the plain console script is killed as soon as its store has a row, wherever it is then."""
    run = tmp_path / "run"
    process = subprocess.Popen(
        [str(SCRIPT), "compress", str(teacher), "--out", str(run), *METHODS["n2n"], *INLINE],
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while count_rows(run / "store.sqlite") < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        process.kill()
        process.wait()
    stored_before = store_rows(run)
    assert stored_before, "the run was killed before it stored anything"
    done = run_script(["compress", "--resume", "--out", run], subprocess_env)
    assert done.returncode == 0, done.stderr
    assert_resumed_like(run, reference("n2n"), stored_before)


def lock_is_free(run: Path) -> bool:
    with open(run / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def test_ctrl_c_mid_search_writes_a_partial_report_exits_130_and_resumes(
    teacher: Path, reference: Callable[[str], Path], subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "hanging"
    process = start_hanging(teacher, run, "n2n", subprocess_env, marker, f"train:{HANG_AT['n2n']}")
    wait_until(marker.exists, process, "the run reached the hanging training")

    # A second run on the same directory, while the first holds it, is refused and changes nothing.
    before = snapshot(run)
    assert not lock_is_free(run)
    second = CliRunner().invoke(app, ["compress", "--out", str(run), "--resume"], env={"COLUMNS": "400"})
    assert second.exit_code == 2 and "in use by another archcompress run" in second.stderr
    assert snapshot(run) == before

    stored_before = store_rows(run)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    lines = err.strip().splitlines()
    assert lines[-1] == "interrupted" and "Traceback" not in err
    assert any(
        line.startswith("warning: interrupted during the search") and f"--resume --out {run}" in line for line in lines
    )

    report = report_of(run)
    assert report["complete"] is False and report["interrupted"] == "search"
    assert [e["candidate_hash"] for e in report["evaluations"]] == list(stored_before)
    assert [e["val_accuracy"] for e in report["evaluations"]] == [acc for acc, _ in stored_before.values()]
    assert report["search"]["evaluations"] == len(stored_before) == HANG_AT["n2n"] - 1
    assert report["top_candidates"][0]["reward"] == max(e["reward"] for e in report["evaluations"])
    assert "Incomplete run" in (run / "report.html").read_text()
    assert store_rows(run) == stored_before  # the abandoned evaluation left no row
    assert lock_is_free(run)
    assert not [p.name for p in run.rglob("*.tmp")]

    # Without --resume the interrupted directory is refused, byte for byte untouched.
    before = snapshot(run)
    again = CliRunner().invoke(app, ["compress", str(teacher), "--out", str(run), *METHODS["n2n"], *INLINE])
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert snapshot(run) == before

    done = run_script(["compress", "--resume", "--out", run], subprocess_env)
    assert done.returncode == 0, done.stderr
    assert_resumed_like(run, reference("n2n"), stored_before)


def test_ctrl_c_during_the_final_distillation_keeps_every_evaluation(
    teacher: Path, reference: Callable[[str], Path], subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "hanging"
    process = start_hanging(teacher, run, "random", subprocess_env, marker, "final:1")
    wait_until(marker.exists, process, "the final distillation")
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    report = report_of(run)
    assert report["complete"] is False and report["interrupted"] == "final distillation"
    assert len(report["evaluations"]) == report["search"]["evaluations"] == 4
    stored_before = store_rows(run)

    done = run_script(["compress", "--resume", "--out", run], subprocess_env)
    assert done.returncode == 0, done.stderr
    assert_resumed_like(run, reference("random"), stored_before)
    assert report_of(run)["search"]["from_store"] == report_of(run)["search"]["proposals"]  # nothing retrained


def test_ctrl_c_to_the_process_group_stops_a_process_pool_run(
    teacher: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """A terminal's Ctrl-C reaches the workers too: the run still ends with 130 and a partial report."""
    run = tmp_path / "run"
    args = ["compress", str(teacher), "--out", str(run), "--method", "random", "--budget", "40", *COMMON]
    process = subprocess.Popen(
        [str(SCRIPT), *args, "--executor", "process", "--workers", "2"],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    wait_until(lambda: count_rows(run / "store.sqlite") >= 1, process, "the first stored evaluation")
    os.killpg(process.pid, signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    assert "Traceback" not in err
    report = report_of(run)
    assert report["complete"] is False and report["interrupted"] == "search"
    assert 1 <= len(report["evaluations"]) < 40
    assert all(not e["status"].startswith("failed") for e in report["evaluations"])  # no worker death recorded
    assert lock_is_free(run)
    deadline = time.monotonic() + 10
    while group_alive(process.pid):  # no worker outlives the run
        assert time.monotonic() < deadline, "a worker process is still running after the run exited"
        time.sleep(0.05)


def group_alive(group: int) -> bool:
    """True while any process of the group is left (an exited worker stays a zombie until it is reaped)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
