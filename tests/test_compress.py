"""`archcompress compress` and `archcompress evaluate` end to end on a tiny digits teacher."""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import Result

from archcompress.checkpoint import load_teacher
from archcompress.config import CompressConfig
from archcompress.evaluate import ResultStore
from archcompress.runtime import torch_threads
from archcompress.space import Candidate, CompressionSpace, load_student
from cli_helpers import TINY_RANDOM, assert_one_line_error, invoke, report_of, snapshot

TINY = TINY_RANDOM


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ``$ARCHCOMPRESS_HOME`` for the module (the teacher-logit cache is reused between runs)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHCOMPRESS_HOME", str(path))
        yield path


@pytest.fixture(autouse=True)
def one_thread(home: Path) -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def teacher(tiny_teacher: Path) -> Path:
    return tiny_teacher


@pytest.fixture(scope="module")
def first_run(teacher: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One finished run with a shared store beside it; tests that change a run work on a copy."""
    base = tmp_path_factory.mktemp("first")
    out = base / "run"
    torch.set_num_threads(1)
    result = invoke(["compress", teacher, "--out", out, *TINY, "--store", base / "shared.sqlite"])
    assert result.exit_code == 0, (result.output, result.exception)
    return out, result


def copy_run(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


def stored_hashes(path: Path) -> list[str]:
    return sorted(r.key.candidate_hash for r in ResultStore(path).query())


def test_compress_writes_the_run_directory(first_run: tuple[Path, Result], teacher: Path) -> None:
    run, result = first_run
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "store.sqlite", "student", "report.json", "log.txt"}
    assert f"run directory: {run}" in result.stdout

    config = CompressConfig.from_yaml(run / "config.yaml")
    assert config.out == str(run) and config.budget == 3 and config.dataset == "digits"
    assert Path(config.teacher) == teacher.resolve()
    assert config.candidate.epochs == 1 and config.candidate.subset == 200 and config.final_epochs == 1

    store = ResultStore(run / "store.sqlite")
    assert len(store) == 3
    assert all(r.status == "ok" and r.method == "random" and r.features for r in store.query())

    report = report_of(run)
    assert {"teacher", "student", "compression", "search", "target", "top_candidates"} <= set(report)
    assert report["complete"] is True and report["method"] == "random" and report["dataset"] == "digits"
    assert report["search"]["evaluations"] == 3 and report["search"]["from_store"] == 0
    assert report["search"]["statuses"] == {"ok": 3}
    teacher_params = report["teacher"]["params"]
    assert teacher_params == sum(p.numel() for p in load_teacher(teacher).model.parameters())
    assert 0 <= report["teacher"]["test_accuracy"] <= 1

    student = load_student(run / "student")
    student_params = sum(p.numel() for p in student.parameters())
    assert report["student"]["params"] == student_params
    assert report["compression"]["params"] == pytest.approx(teacher_params / student_params)
    assert report["compression"]["params"] > 1
    assert 0 <= report["student"]["test_accuracy"] <= 1 and 0 <= report["student"]["val_accuracy"] <= 1
    assert config.final_loss == "kd" and report["student"]["distillation_loss"] == "kd"  # the default
    assert "final distillation: 1 epochs, kd loss" in (run / "log.txt").read_text()
    with torch.no_grad():
        assert student(torch.randn(5, 1, 8, 8)).shape == (5, 10)

    # the student is the best of the three stored candidates, and its search accuracy is the stored one
    chosen = report["student"]["candidate_hash"]
    assert chosen in stored_hashes(run / "store.sqlite")
    assert report["top_candidates"][0]["candidate_hash"] == chosen
    assert (
        json.loads((run / "student" / "arch.json").read_text())["metadata"]["candidate"]
        == report["student"]["candidate"]
    )
    log = (run / "log.txt").read_text()
    assert log.count("candidate ") >= 3 and "student: test accuracy" in log


def test_an_existing_out_is_never_overwritten(first_run: tuple[Path, Result], teacher: Path) -> None:
    run, _ = first_run
    before = snapshot(run)
    result = invoke(["compress", teacher, "--out", run, *TINY])
    assert_one_line_error(result, "already exists", "--resume")
    assert snapshot(run) == before


def test_resume_reuses_every_stored_evaluation(
    first_run: tuple[Path, Result], tmp_path: Path, unfinished: Callable[[Path], Path]
) -> None:
    run = unfinished(copy_run(first_run[0], tmp_path / "moved-run"))  # a run directory that was moved keeps working
    original = snapshot(first_run[0])
    result = invoke(["compress", "--out", run, "--resume"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = report_of(run)
    assert report["search"]["from_store"] == 3 and report["search"]["evaluations"] == 3
    first = report_of(first_run[0])
    assert report["student"]["candidate"] == first["student"]["candidate"]
    assert first["invocations"] == 1 and report["invocations"] == 2
    assert report["seconds"] > first["seconds"]  # the first invocation's time is counted too
    assert stored_hashes(run / "store.sqlite") == stored_hashes(first_run[0] / "store.sqlite")
    assert snapshot(first_run[0]) == original  # the resumed run wrote into --out only
    assert CompressConfig.from_yaml(run / "config.yaml").out == str(run)


def test_config_repeats_the_run_from_the_shared_store(first_run: tuple[Path, Result], tmp_path: Path) -> None:
    run = first_run[0]
    new = tmp_path / "again"
    result = invoke(["compress", "--config", run / "config.yaml", "--out", new])
    assert result.exit_code == 0, (result.output, result.exception)
    report = report_of(new)
    assert report["search"]["from_store"] == 3  # the config names the shared store of the first run
    assert report["student"]["candidate"] == report_of(run)["student"]["candidate"]
    assert stored_hashes(new / "store.sqlite") == stored_hashes(run / "store.sqlite")


def test_config_without_the_store_trains_the_same_candidates_to_the_same_accuracies(
    first_run: tuple[Path, Result], tmp_path: Path
) -> None:
    run = first_run[0]
    raw = yaml.safe_load((run / "config.yaml").read_text())
    raw["store"] = None
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    new = tmp_path / "fresh"
    result = invoke(["compress", "--config", config, "--out", new])
    assert result.exit_code == 0, (result.output, result.exception)
    report = report_of(new)
    assert report["search"]["from_store"] == 0
    accuracies = {r.key.candidate_hash: r.val_accuracy for r in ResultStore(new / "store.sqlite").query()}
    assert accuracies == {r.key.candidate_hash: r.val_accuracy for r in ResultStore(run / "store.sqlite").query()}
    assert report["student"]["candidate"] == report_of(run)["student"]["candidate"]
    assert report["student"]["test_accuracy"] == report_of(run)["student"]["test_accuracy"]


def test_process_executor_runs_the_same_search(first_run: tuple[Path, Result], teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "parallel"
    result = invoke(["compress", teacher, "--out", out, *TINY, "--executor", "process", "--workers", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert stored_hashes(out / "store.sqlite") == stored_hashes(first_run[0] / "store.sqlite")
    accuracies = {r.key.candidate_hash: r.val_accuracy for r in ResultStore(out / "store.sqlite").query()}
    expected = {r.key.candidate_hash: r.val_accuracy for r in ResultStore(first_run[0] / "store.sqlite").query()}
    assert accuracies == expected


def test_unreachable_target_exits_before_creating_the_run(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY, "--target", "100000x"]), "out of reach")
    assert not out.exists()


def test_a_reachable_target_is_recorded(first_run: tuple[Path, Result], teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shared = first_run[0].parent / "shared.sqlite"
    result = invoke(["compress", teacher, "--out", out, *TINY, "--target", "1.5x", "--store", shared])
    assert result.exit_code == 0, (result.output, result.exception)
    report = report_of(out)
    assert report["target"]["ratio"] == 1.5
    assert report["target"]["met"] is (report["compression"]["params"] >= 1.5)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--budget", "0"], ["--budget"]),
        (["--target", "ten"], ["--target 'ten'"]),
        (["--executor", "dask"], ["--executor"]),
        (["--method", "distill"], ["--method 'distill'"]),
    ],
)
def test_bad_options_exit_2_without_a_run_directory(
    teacher: Path, tmp_path: Path, extra: list[str], words: list[str]
) -> None:
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY, *extra]), *words)
    assert not out.exists()


def test_a_teacher_for_another_data_set_exits_2(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = assert_one_line_error(
        invoke(["compress", teacher, "--out", out, *TINY, "--dataset", "mnist1d"]), "mnist1d", "digits"
    )
    assert "shape" in line
    assert not out.exists()


def test_a_corrupt_store_exits_2_and_is_left_as_it_was(teacher: Path, tmp_path: Path) -> None:
    store = tmp_path / "shared.sqlite"
    store.write_bytes(b"this is not a database" * 100)
    before = store.read_bytes()
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY, "--store", store]), "corrupt")
    assert store.read_bytes() == before
    assert not out.exists()  # a retry with a good --store must not need --resume


def test_a_locked_run_directory_is_refused(first_run: tuple[Path, Result], tmp_path: Path) -> None:
    run = copy_run(first_run[0], tmp_path / "run")
    (run / "report.json").write_text("{}")  # marks the copy, so any change by the refused run shows
    before = {name: data for name, data in snapshot(run).items() if name != ".lock"}
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_one_line_error(invoke(["compress", "--out", run, "--resume"]), "in use")
    assert {name: data for name, data in snapshot(run).items() if name != ".lock"} == before


def test_resume_needs_a_run_directory(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["compress", "--out", tmp_path / "none", "--resume"]), "not a run directory")
    assert_one_line_error(invoke(["compress", "--resume"]), "--resume needs --out")
    assert not (tmp_path / "none").exists()


def test_a_run_where_nothing_trains_exits_2(first_run: tuple[Path, Result], tmp_path: Path) -> None:
    raw = yaml.safe_load((first_run[0] / "config.yaml").read_text())
    raw["store"] = None
    raw["candidate"]["lr"] = 1.0e12  # every candidate diverges
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    assert_one_line_error(
        invoke(["compress", "--config", config, "--out", out]), "none of the 3 candidates", after_progress=True
    )
    assert [r.status for r in ResultStore(out / "store.sqlite").query()] == ["diverged"] * 3
    assert not (out / "report.json").exists()


def candidate_file(teacher: Path, path: Path) -> Path:
    loaded = load_teacher(teacher)
    space = CompressionSpace.from_model(loaded.model, loaded.meta.input_shape)
    path.write_text(space.uniform_candidate(0.5).to_json())
    return path


def test_evaluate_command_trains_once_then_answers_from_the_store(teacher: Path, home: Path, tmp_path: Path) -> None:
    candidate = candidate_file(teacher, tmp_path / "cand.json")
    store = tmp_path / "store.sqlite"
    args = ["evaluate", teacher, "--candidate", candidate, "--epochs", "1", "--device", "cpu", "--store", store]
    first = invoke(args)
    assert first.exit_code == 0, (first.output, first.exception)
    assert ": ok, val accuracy" in first.stdout and "from the store" not in first.stdout
    second = invoke(args)
    assert second.exit_code == 0, (second.output, second.exception)
    assert ": ok, val accuracy" in second.stdout and "(from the store, not retrained)" in second.stdout
    assert first.stdout.split(",")[1] == second.stdout.split(",")[1]  # the same val accuracy
    (stored,) = ResultStore(store).query()
    assert stored.status == "ok" and stored.method == "evaluate"


def test_evaluate_command_uses_the_shared_store_in_the_cache_by_default(
    teacher: Path, home: Path, tmp_path: Path
) -> None:
    candidate = candidate_file(teacher, tmp_path / "cand.json")
    args = ["evaluate", teacher, "--candidate", candidate, "--epochs", "1", "--device", "cpu", "--seed", "5"]
    assert invoke(args).exit_code == 0
    assert "(from the store, not retrained)" in invoke(args).stdout
    assert any(r.key.seed == 5 for r in ResultStore(home / "store.sqlite").query())


def test_evaluate_command_refuses_a_candidate_of_another_space(teacher: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "cand.json"
    candidate.write_text(Candidate(keep=(True, False, True), ratios=(0.5,)).to_json())
    assert_one_line_error(
        invoke(["evaluate", teacher, "--candidate", candidate, "--epochs", "1", "--device", "cpu"]),
        "3 keep flags",
        "another teacher",
    )
    candidate.write_text("{not json")
    assert_one_line_error(invoke(["evaluate", teacher, "--candidate", candidate]), "not valid JSON")
    assert_one_line_error(invoke(["evaluate", teacher, "--candidate", tmp_path / "missing.json"]), "cannot read")
