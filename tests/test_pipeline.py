"""The pipeline through the API and the CLI: every constraint honoured by the final choice, the report's
``constraints`` and ``chosen``, --resume of a finished run, settings refused or applied on --resume and
--config, an empty pre-made --out, stale exports, the live status."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import archcompress
from archcompress.errors import ArchcompressError
from archcompress.evaluate import ResultStore
from archcompress.pipeline import SearchStatus
from archcompress.runtime import torch_threads
from archcompress.search import meets
from cli_helpers import invoke

TINY = {"candidate.epochs": 1, "candidate.subset": 200}
TINY_FLAGS = ["--epochs", "1", "--subset", "200", "--final-epochs", "1"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch, torch_threads(1):
        patch.setenv("ARCHCOMPRESS_HOME", str(path))
        yield path


def run(teacher: Path, out: Path, **options: Any) -> archcompress.CompressionResult:
    options.setdefault("budget", 5)
    options.setdefault("final_epochs", 1)
    return archcompress.compress(teacher, out, settings={**TINY, **options.pop("settings", {})}, **options)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_teacher: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished random-search run with a MAC limit (tests that change a run work on their own)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(tiny_teacher, out, method="random", budget=4)
    return out


LIMITS = {  # name -> the limit, from the teacher's figures
    "target": lambda t: 4.0,
    "max_params": lambda t: t["params"] // 4,
    "max_macs": lambda t: t["macs"] // 4,
    "max_latency_ms": lambda t: 1000.0,
    "min_accuracy": lambda t: 0.12,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LIMITS))
def test_the_final_choice_honours_each_constraint(
    name: str, finished: Path, tiny_teacher: Path, home: Path, tmp_path: Path
) -> None:
    teacher = json.loads((finished / "report.json").read_text())["teacher"]
    limit = LIMITS[name](teacher)
    statuses: list[SearchStatus] = []
    result = run(tiny_teacher, tmp_path / "run", method="random", budget=6, on_progress=statuses.append,
                 **{name: limit})  # fmt: skip
    report = result.report
    checks = {c["name"]: c for c in report["constraints"]}
    assert set(checks) == {name} and checks[name]["limit"] == limit and checks[name]["value"] is not None
    rows = report["top_candidates"]
    assert len({r["candidate_hash"] for r in rows}) == len(rows)  # each candidate once
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["candidate_hash"] == report["chosen"]["candidate_hash"]
    meeting = [r for r in rows if r["meets_constraints"]]
    if meeting:  # the best reward among the candidates that meet the limit, never one that breaks it
        assert chosen[0]["meets_constraints"] and chosen[0]["reward"] == max(r["reward"] for r in meeting)
        assert "meet every constraint" in report["chosen"]["why"]
        if name != "min_accuracy":  # the final student's architecture is the chosen candidate's
            assert checks[name]["met"] is True
    else:
        assert "comes closest" in report["chosen"]["why"]
    # the live status's best always meets the constraint
    constraints = statuses[-1].constraints
    assert all(s.best is None or meets(s.best, constraints, s.teacher_params) for s in statuses)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"chosen student {report['chosen']['candidate_hash']}" in log
    page = (tmp_path / "run" / "report.html").read_text()  # the constraint table, the chosen row, the reason
    assert "<h3>Constraints</h3>" in page and page.count("<tr class='chosen'>") == 1
    assert "meets constraints" in page and "Chosen: " in page


@pytest.mark.slow
def test_prune_reports_its_constraints_and_why(tiny_teacher: Path, home: Path, tmp_path: Path) -> None:
    report = run(tiny_teacher, tmp_path / "run", method="prune", target=4.0).report
    assert report["constraints"][0]["name"] == "target" and report["constraints"][0]["met"] is True
    assert report["chosen"]["candidate_hash"] is None and "L1 pruning" in report["chosen"]["why"]


def test_resuming_a_finished_run_touches_nothing(finished: Path, home: Path) -> None:
    before = snapshot(finished)
    result = archcompress.compress(out=finished, resume=True)
    assert result.already_complete and result.report == json.loads((finished / "report.json").read_text())
    cli = invoke(["compress", "--resume", "--out", finished])
    assert cli.exit_code == 0, cli.output
    assert "already complete" in cli.stdout
    assert snapshot(finished) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--target", "8x"], "--target 8.0 differs from the run's None"), (["--epochs", "3"], "--epochs 3 differs"),
     (["--budget", "2"], "may only grow"), (["--method", "prune"], "--method prune differs")],
)  # fmt: skip
def test_resume_refuses_settings_that_change_the_run_by_name(finished: Path, args: list[str], words: str) -> None:
    before = snapshot(finished)
    result = invoke(["compress", "--resume", "--out", finished, *args])
    assert result.exit_code == 2 and words in result.stderr and "--resume keeps the run's settings" in result.stderr
    assert snapshot(finished) == before


@pytest.mark.slow
def test_resume_with_a_larger_budget_continues_and_drops_stale_exports(
    tiny_teacher: Path, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run(tiny_teacher, out, method="random", budget=2)
    stale = out / "student" / "model.onnx"
    stale.write_bytes(b"exported from the first student")
    result = invoke(["compress", "--resume", "--out", out, "--budget", "4", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "--budget raised from 2 to 4" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["evaluations"] == 4 and report["invocations"] == 2
    assert not stale.exists()


@pytest.mark.slow
def test_config_with_overrides_applies_them_and_says_so(finished: Path, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    result = invoke(["compress", "--config", finished / "config.yaml", "--out", out, "--budget", "2"])
    assert result.exit_code == 0, result.output
    assert f"--budget 2 replaces 4 of {finished / 'config.yaml'}" in result.stderr
    assert json.loads((out / "report.json").read_text())["search"]["evaluations"] == 2


@pytest.mark.slow
def test_an_empty_pre_made_out_is_accepted_and_a_used_one_refused(
    tiny_teacher: Path, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "made-by-the-scheduler"
    out.mkdir()
    run(tiny_teacher, out, method="random", budget=1)
    assert (out / "report.json").is_file()
    with pytest.raises(ArchcompressError, match="already exists"):
        run(tiny_teacher, out, method="random", budget=1)


@pytest.mark.slow
def test_the_paper_preset_works_from_the_api(tiny_teacher: Path, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(tiny_teacher, out, method="random", budget=1, preset="paper")
    config = archcompress.config.CompressConfig.from_yaml(out / "config.yaml")
    assert (config.candidate.init, config.candidate.schedule, config.candidate.epochs) == ("scratch", "none", 1)
    assert config.options_for("n2n").stage1_width == "full"
    assert all(r.method == "random" for r in ResultStore(out / "store.sqlite").query())


@pytest.mark.slow
def test_finalists_are_trained_longer_and_the_best_by_val_is_distilled(
    tiny_teacher: Path, home: Path, tmp_path: Path, unfinished: Callable[[Path], Path]
) -> None:
    out = tmp_path / "run"
    report = run(tiny_teacher, out, method="random", budget=6, target=2.0, finalists=3, finalist_epochs=2).report
    finalists = report["chosen"]["finalists"]
    assert 2 <= len(finalists) <= 3
    best = max(finalists, key=lambda f: f["finalist_val_accuracy"])
    assert report["chosen"]["candidate_hash"] == best["candidate_hash"] == report["student"]["candidate_hash"]
    assert "after 2 epochs among" in report["chosen"]["why"]
    # the finalists are the best-reward candidates that meet the target, and their longer runs are stored
    meeting = [r for r in report["top_candidates"] if r["meets_constraints"]]
    expected = [r["candidate_hash"] for r in sorted(meeting, key=lambda r: -r["reward"])][: len(finalists)]
    assert [f["candidate_hash"] for f in finalists] == expected
    budgets = {row.key.budget for row in ResultStore(out / "store.sqlite").query()}
    assert len(budgets) == 2  # the search's and the finalists' (2 epochs)
    # a resumed run trains nothing again: the longer runs come back from the store
    again = archcompress.compress(out=unfinished(out), resume=True).report
    assert again["chosen"] == report["chosen"]


@pytest.mark.slow
def test_rungs_promote_the_best_and_the_choice_comes_from_the_top_rung(
    tiny_teacher: Path, home: Path, tmp_path: Path, unfinished: Callable[[Path], Path]
) -> None:
    out = tmp_path / "run"
    settings = {"candidate.rungs": (1, 2, 3)}
    report = run(tiny_teacher, out, method="random", budget=9, target=2.0, settings=settings).report
    rungs = report["search"]["rungs"]
    assert rungs["epochs"] == [1, 2, 3] and rungs["candidates"][0] == 9
    assert rungs["candidates"][1] >= 1  # the teacher's random students meet 2x: at least 3 are eligible
    top = report["top_candidates"][0]
    reached = max(rung for rung, count in enumerate(rungs["candidates"]) if count)
    assert top["rung"] == reached and top["epochs"] == [1, 2, 3][reached] and top["chosen"]
    assert f"rung {reached + 1}" in report["chosen"]["why"]
    assert report["search"]["evaluations"] == 9  # promotions do not use up the budget
    assert not (out / "rungs").exists()  # the checkpoints between rungs go when the run completes
    stored = ResultStore(out / "store.sqlite").query()
    assert len({row.key.budget for row in stored}) == reached + 1 and len(stored) == sum(rungs["candidates"])
    # a resumed run finds every rung in the store and chooses the same student
    again = archcompress.compress(out=unfinished(out), resume=True).report
    assert again["chosen"] == report["chosen"] and again["search"]["rungs"] == rungs


def test_epochs_alone_means_one_fidelity_and_bad_rungs_are_refused(
    tiny_teacher: Path, home: Path, tmp_path: Path
) -> None:
    from archcompress.pipeline.settings import resolve_settings

    config, _ = resolve_settings(teacher=str(tiny_teacher), out=str(tmp_path / "a"), changes={"candidate.epochs": 4})
    assert config.candidate.rungs == () and config.candidate.epochs == 4
    both = {"candidate.epochs": 4, "candidate.rungs": (1, 3)}
    config, _ = resolve_settings(teacher=str(tiny_teacher), out=str(tmp_path / "b"), changes=both)
    assert config.candidate.rungs == (1, 3)
    for text, words in [("3,1", "--rungs must be increasing"), ("1,x", "--rungs '1,x'"), ("0", "at least 1")]:
        result = invoke(["compress", tiny_teacher, "--out", tmp_path / "c", "--rungs", text])
        assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.output
    result = invoke(["compress", tiny_teacher, "--out", tmp_path / "d", "--rungs", "1,3", "--promote", "1.5"])
    assert result.exit_code == 2 and "--promote must be a share between 0 and 1" in result.stderr
