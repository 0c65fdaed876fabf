"""benchmarks/quality.py: its summary of seeds (mean, spread, the runs within one point of the teacher)."""

from __future__ import annotations

import pytest

from benchmark_scripts import load_benchmark

quality = load_benchmark("quality")


def _run(seed: int, accuracy: float, met: bool = True) -> dict[str, object]:
    return {"method": "n2n", "target": 500.0, "seed": seed, "test_accuracy": accuracy, "teacher_test_accuracy": 0.986,
            "compression": 510.0, "params": 18_000, "macs": 1_000_000, "target_met": met, "hypervolume": 3.0,
            "seconds": 60.0}  # fmt: skip


def test_a_loss_of_exactly_one_point_counts_as_within_one_point() -> None:
    # 98.6% - 97.6% is 1.0000000000000009 points in floating point: 10 of 1,000 test images, at the bar's edge
    (row,) = quality.summarise([_run(0, 0.976), _run(1, 0.982), _run(2, 0.975)])
    assert row["within_1_point"] == 2  # 1.0 and 0.4 points lost count; 1.1 points does not
    assert row["seeds"] == 3 and row["target_met"] == 3
    assert row["test_accuracy_mean"] == pytest.approx((0.976 + 0.982 + 0.975) / 3)
    assert row["drop_points_mean"] == pytest.approx(100 * 0.986 - 100 * (0.976 + 0.982 + 0.975) / 3)


def test_a_run_that_missed_the_target_is_never_within_one_point() -> None:
    (row,) = quality.summarise([_run(0, 0.986, met=False), _run(1, 0.986)])
    assert row["target_met"] == 1 and row["within_1_point"] == 1
