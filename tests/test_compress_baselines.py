"""`compress --method uniform` and `--method prune` end to end on a tiny digits teacher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archcompress.space import load_student
from cli_helpers import invoke, report_of

WIDE = {"COLUMNS": "400"}
TINY = ["--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHCOMPRESS_HOME", str(home))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield tiny_teacher
        torch.set_num_threads(before)


def test_uniform_sweeps_one_width_to_the_target(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke(
        ["compress", teacher, "--method", "uniform", "--target", "8x", "--budget", "3", *TINY, "--out", run]
    )
    assert result.exit_code == 0, result.output
    report = report_of(run)
    assert report["method"] == "uniform" and report["search"]["evaluations"] == 3
    assert report["target"]["met"] and report["compression"]["params"] >= 8
    ratios = report["student"]["candidate"]["ratios"]
    assert len(set(ratios)) == 1  # one multiplier for every group
    assert sum(p.numel() for p in load_student(run / "student").parameters()) == report["student"]["params"]


def test_prune_prunes_the_teacher_to_the_target_and_distils_it(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke(["compress", teacher, "--method", "prune", "--target", "10x", *TINY, "--out", run])
    assert result.exit_code == 0, result.output
    report = report_of(run)
    assert report["method"] == "prune" and report["search"]["evaluations"] == 0
    assert report["student"]["method"] == "prune" and 0 < report["student"]["pruning_ratio"] < 1
    # the limit is met (pruning again lower when it lands over), and pruning lands close to it (coarse steps on
    # this small teacher)
    assert report["target"]["met"] and 10 <= report["compression"]["params"] <= 10 / 0.9
    assert 0.0 <= report["student"]["test_accuracy"] <= 1.0
    student = load_student(run / "student")
    assert sum(p.numel() for p in student.parameters()) == report["student"]["params"]
    assert student(torch.zeros(2, *student.arch.input_shape)).shape == (2, 10)


@pytest.mark.parametrize(
    ("options", "words"),
    [([], ["--target", "--max-params"]), (["--target", "100000x"], ["cannot prune"])],
)
def test_prune_without_a_reachable_size_exits_2_before_the_run(
    teacher: Path, tmp_path: Path, options: list[str], words: list[str]
) -> None:
    run = tmp_path / "run"
    result = invoke(["compress", teacher, "--method", "prune", *options, *TINY, "--out", run])
    assert result.exit_code == 2, result.output
    assert all(word in result.stderr for word in words), result.stderr
    assert "Traceback" not in result.output and not run.exists()
