"""docs/benchmarks.md shows the tables of benchmarks/results/parallel.json, made by benchmarks/parallel.py (so the
doc's figures are the measured ones), and the file says the machine was shared when it was."""

from __future__ import annotations

import json
from pathlib import Path

from bench_scripts import load_benchmark

ROOT = Path(__file__).parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "parallel.json"


def test_the_benchmark_doc_shows_the_measured_parallel_tables() -> None:
    result = json.loads(RESULTS.read_text())
    tables = load_benchmark("parallel").markdown_tables(result)
    assert tables in (ROOT / "docs" / "benchmarks.md").read_text()


def test_the_parallel_results_say_how_they_were_measured() -> None:
    result = json.loads(RESULTS.read_text())
    for name in ("inline", "process", "ray"):
        assert result[f"{name}_seconds"] == result["executors"][name]["search_seconds"] > 0
        # the same search (same seed) in every executor; N2N may converge before its budget is spent
        assert result["executors"][name]["evaluations"] == result["executors"]["inline"]["evaluations"]
        assert 0 < result["executors"][name]["evaluations"] <= result["search"]["evaluations"]
        assert len(result["executors"][name]["load_average_before"]) == 3
    assert ("shared with other work" in result["note"]) == result["machine_shared"]
    assert {(row["student"], row["threads"], row["added_load"] != "none") for row in result["threads"]} == {
        (student, threads, loaded) for student in ("tiny", "large") for threads in (1, 2) for loaded in (False, True)
    }
