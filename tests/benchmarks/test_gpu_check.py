"""benchmarks/gpu_check.py works before any GPU run: its ``--device cpu --quick`` dry run writes every field of
gpu.json and says plainly that it is not a GPU run; ``--device cuda`` without a GPU fails in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check.py"


def run_script(*args: object, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHCOMPRESS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)  # fmt: skip


@pytest.mark.slow  # ~1 minute on 2 cores: a teacher, two process pools and one compress, all tiny
def test_the_cpu_dry_run_writes_every_field_and_is_not_a_gpu_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = run_script("--device", "cpu", "--quick", "--out", out, home=tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["gpu_run"] is False and result["goal_met"] is False
    assert result["device"] == "cpu" and "NOT A GPU RUN" in result["note"]
    assert result["torch"] and "cuda" in result  # the CUDA version (None on a CPU-only build)
    throughput = result["throughput"]
    assert throughput["device_samples_per_second"] > 0 and throughput["cpu_samples_per_second"] > 0
    assert [row["workers_per_gpu"] for row in result["concurrency"]] == [1, 2]
    for row in result["concurrency"]:
        assert row["candidates_per_minute"] == pytest.approx(60 * row["candidates"] / row["seconds"])
        assert row["statuses"] == ["ok"]  # every candidate trained, in every worker
    best = max(result["concurrency"], key=lambda row: row["candidates_per_minute"])
    assert result["best_workers_per_gpu"] == best["workers_per_gpu"]
    assert result["best_vs_k1"] == pytest.approx(
        best["candidates_per_minute"] / result["concurrency"][0]["candidates_per_minute"]
    )
    table = run_script("--table", out, home=tmp_path / "home").stdout
    assert "Device: cpu (NOT A GPU RUN)" in table
    assert table.count("\n| ") == 1 + len(result["concurrency"])  # header and one row per k
    end = result["end_to_end"]
    assert end["complete"] is True and end["evaluations"] == end["budget"] == 2
    assert 0.0 <= end["student_test_accuracy"] <= 1.0 and end["compression_params"] > 1


def test_cuda_without_a_gpu_fails_in_one_line(tmp_path: Path) -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = run_script("--device", "cuda", "--out", tmp_path / "gpu.json", home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --device cuda was requested but torch sees no CUDA GPU: use --device cpu (or auto)"
    ]
    assert not (tmp_path / "gpu.json").exists()
