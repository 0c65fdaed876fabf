"""benchmarks/final_distillation.py: its paired comparison of two losses on the same students."""

from __future__ import annotations

import pytest

from benchmark_scripts import load_benchmark

bench = load_benchmark("final_distillation")


def _row(run: str, variant: str, accuracy: float, bench_name: str = "t") -> dict[str, object]:
    return {"bench": bench_name, "run": run, "variant": variant, "test_accuracy": accuracy}


def test_differences_are_paired_per_student_and_unpaired_students_are_left_out() -> None:
    rows = [_row("a", "l2", 0.90), _row("a", "kd", 0.93), _row("b", "l2", 0.80), _row("b", "kd", 0.79),
            _row("c", "l2", 0.50)]  # fmt: skip  # c has no kd run yet
    summary = bench.paired(rows, ["l2", "kd"])
    assert summary["students"] == 2
    assert summary["kd"]["minus_l2_mean"] == pytest.approx(1.0)  # (+3 - 1) / 2 points
    assert (summary["kd"]["better_than_l2"], summary["kd"]["worse_than_l2"]) == (1, 1)
    assert summary["l2"]["test_accuracy_mean"] == pytest.approx(85.0)
    assert summary["l2"]["minus_l2_mean"] == 0.0


def test_students_of_different_teachers_never_pair() -> None:
    rows = [_row("n2n-seed0", "l2", 0.9, "x"), _row("n2n-seed0", "kd", 0.8, "y")]  # same run name, two teachers
    assert bench.paired(bench.rows_by_student(rows), ["l2", "kd"])["students"] == 0


def test_a_saved_row_counts_only_for_the_student_it_measured() -> None:
    row = {**_row("n2n-seed0", "kd", 0.9), "candidate_hash": "abc"}
    assert bench.measured(row, "abc")
    assert not bench.measured(row, "def")  # the run was made again and chose another student
    assert not bench.measured(_row("n2n-seed0", "kd", 0.9), "abc")  # rows from before hashes were recorded
    assert not bench.measured(None, "abc")
