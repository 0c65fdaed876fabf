"""`archcompress compress --method n2n` end to end on a tiny budget, and starting from saved policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from archcompress.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def teacher(tiny_teacher: Path) -> Path:
    return tiny_teacher


TINY = ["--method", "n2n", "--budget", "6", "--rollouts", "3", "--epochs", "1", "--subset", "200",
        "--final-epochs", "1"]  # fmt: skip


@pytest.mark.slow
def test_n2n_run_writes_policies_and_updates(teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    result = runner.invoke(app, ["compress", str(teacher), *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == "n2n" and report["search"]["evaluations"] == 6  # distinct candidates
    assert report["search"]["proposals"] >= 6  # a repeated rollout is answered by the store, for free
    stages = [u["stage"] for u in report["n2n"]["updates"]]
    assert stages[0] == 1 and stages[-1] == 2 and stages == sorted(stages)
    assert (run / "policies" / "removal.pt").is_file() and (run / "policies" / "shrink.pt").is_file()

    again = tmp_path / "again"
    reuse = runner.invoke(
        app, ["compress", str(teacher), *TINY, "--policy", str(run / "policies"), "--seed", "1", "--out", str(again)]
    )
    assert reuse.exit_code == 0, reuse.output
    assert "policy: " + str(run / "policies") in (again / "config.yaml").read_text()

    # adapting the transferred policies; a policy trained on other unit features is refused in one line
    softened = tmp_path / "softened"
    adapt = ["--transfer-temperature", "2", "--transfer-anneal", "3", "--transfer-reset", "shrink-head"]
    reuse = runner.invoke(
        app, ["compress", str(teacher), *TINY, "--policy", str(run / "policies"), *adapt, "--out", str(softened)]
    )
    assert reuse.exit_code == 0, reuse.output
    config = (softened / "config.yaml").read_text()
    assert "transfer_temperature: 2.0" in config and "transfer_reset: shrink-head" in config
    relative = runner.invoke(
        app, ["compress", str(teacher), *TINY, "--policy", str(run / "policies"), "--policy-features", "relative",
              "--out", str(tmp_path / "relative")],
    )  # fmt: skip
    assert relative.exit_code == 2 and "pass --policy-features absolute" in relative.output

    missing = runner.invoke(
        app, ["compress", str(teacher), *TINY, "--policy", str(tmp_path), "--out", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2 and "missing" in missing.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_n2n_resume_replays_from_the_store(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfinished: Callable[[Path], Path]
) -> None:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert runner.invoke(app, ["compress", str(teacher), *TINY, "--out", str(run)]).exit_code == 0
    first = json.loads((run / "report.json").read_text())
    resumed = runner.invoke(app, ["compress", "--resume", "--out", str(unfinished(run))])
    assert resumed.exit_code == 0, resumed.output
    second = json.loads((run / "report.json").read_text())
    assert second["search"]["from_store"] == second["search"]["proposals"]  # nothing was trained again
    assert second["search"]["proposals"] == first["search"]["proposals"]
    assert second["student"]["candidate_hash"] == first["student"]["candidate_hash"]
    assert [u["mean_reward"] for u in second["n2n"]["updates"]] == [u["mean_reward"] for u in first["n2n"]["updates"]]


def test_paper_preset_uses_the_authors_settings(teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    args = ["compress", str(teacher), "--method", "n2n", "--preset", "paper", "--budget", "3", "--rollouts", "3",
            "--subset", "100", "--final-epochs", "1", "--out", str(run)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["n2n"]["shrink_lr"] == 0.1 and config["n2n"]["rollouts"] == 3
    assert config["candidate"]["init"] == "scratch" and config["candidate"]["epochs"] == 5
    assert config["candidate"]["schedule"] == "none" and config["candidate"]["lr"] == 5e-4


def test_ratios_and_min_channels_widen_the_space(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    base = ["compress", str(teacher), "--budget", "1", "--epochs", "1", "--subset", "100", "--final-epochs", "1"]
    refused = runner.invoke(app, [*base, "--target", "60x", "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "out of reach" in refused.output
    run = tmp_path / "b"
    wide = ["--ratios", "0.05,0.1,0.25,0.5,1", "--min-channels", "1", "--target", "60x", "--out", str(run)]
    result = runner.invoke(app, [*base, *wide])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["space"]["min_channels"] == 1 and config["space"]["ratios"] == [0.05, 0.1, 0.25, 0.5, 1.0]


def test_latency_objective_measures_every_student_and_the_teacher(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archcompress.evaluate import ResultStore
    from archcompress.search import reward_of

    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    args = ["compress", str(teacher), "--method", "n2n", "--objective", "latency", "--budget", "4", "--rollouts",
            "2", "--epochs", "1", "--subset", "100", "--final-epochs", "1", "--keep-pooling",
            "--out", str(run)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["n2n"]["objective"] == "latency" and "max-pool" not in config["space"]["removable"]
    rows = [r for r in ResultStore(run / "store.sqlite").query() if r.status == "ok"]
    assert rows and all(r.extra["latency_ms"] > 0 for r in rows)
    report = json.loads((run / "report.json").read_text())
    # the final student is the trained candidate with the best reward on latency, not on parameters
    teacher_ms, teacher_acc = report["teacher"]["latency_ms"], report["teacher"]["val_accuracy"]
    by_latency = {r.key.candidate_hash: reward_of("ok", r.val_accuracy, r.extra["latency_ms"], teacher_acc, teacher_ms)
                  for r in rows}  # fmt: skip
    assert report["chosen"]["candidate_hash"] == max(by_latency, key=lambda h: by_latency[h])
    assert "on latency" in report["chosen"]["why"]
    for row in report["top_candidates"]:  # the report ranks by the same reward
        assert row["reward"] == pytest.approx(by_latency[row["candidate_hash"]])
