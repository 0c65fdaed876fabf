"""benchmarks/n2n_transfer.py: how it compares runs, and that docs/benchmarks.md shows what its results file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_scripts import load_benchmark

ROOT = Path(__file__).parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "n2n_transfer.json"


def _row(variant: str, seed: int, curve: list[float], test: float, pair: str = "vgg") -> dict[str, Any]:
    return {"pair": pair, "role": "target", "variant": variant, "seed": seed, "best_reward": max(curve),
            "best_reward_curve": curve, "test_accuracy": test, "mean_val_accuracy_first_10": 0.5,
            "evaluations": len(curve)}  # fmt: skip


def test_evaluations_to_best_count_from_one_and_never_is_none() -> None:
    script = load_benchmark("n2n_transfer")
    assert script.evaluations_to_reach([0.1, 0.5, 0.5, 0.9], 0.5) == 2
    assert script.evaluations_to_reach([0.1, 0.5], 0.9) is None


def test_each_variant_is_compared_with_the_scratch_run_of_its_pair_and_seed() -> None:
    script = load_benchmark("n2n_transfer")
    rows = [
        _row("scratch", 0, [0.2, 0.4, 0.6, 0.8], 0.90),
        _row("transfer", 0, [0.5, 0.8, 0.8, 0.8], 0.91),  # the scratch best after 2 of 4: half, and as good
        _row("scratch", 1, [0.3, 0.3, 0.3, 0.7], 0.90),
        _row("transfer", 1, [0.6, 0.6, 0.6, 0.6], 0.95),  # never reaches 0.7
        _row("soft", 0, [0.1, 0.1, 0.9, 0.9], 0.80),  # reaches it after 3: too late, and a worse student
        _row("embedding", 0, [0.5, 0.5], 0.9),
        _row("embedding-prior", 0, [0.5, 0.6], 0.9),
        {**_row("transfer", 0, [0.0], 0.0), "role": "source"},  # a source run is nobody's comparison
    ]
    pairs = script.compare(rows)
    assert [(p["variant"], p["seed"]) for p in pairs] == [("embedding-prior", 0), ("soft", 0), ("transfer", 0),
                                                          ("transfer", 1)]  # fmt: skip
    first = next(p for p in pairs if (p["variant"], p["seed"]) == ("transfer", 0))
    assert (first["source"], first["target"], first["scratch_best"]) == ("vgg11", "vgg19", 0.8)
    assert (first["scratch_evals_to_best"], first["transfer_evals_to_best"]) == (4, 2)
    assert next(p for p in pairs if p["variant"] == "embedding-prior")["transfer_evals_to_best"] == 1
    verdicts = {v["variant"]: v for v in (script.verdict(pairs, name) for name in ("transfer", "soft"))}
    assert verdicts["transfer"] == {"variant": "transfer", "runs": 2, "half_the_evaluations": 1,
                                    "student_at_least_as_good": 2, "both": 1}  # fmt: skip
    assert verdicts["soft"]["both"] == 0


def test_the_results_file_is_consistent_and_the_doc_shows_its_tables() -> None:
    script = load_benchmark("n2n_transfer")
    result = json.loads(RESULTS.read_text())
    assert result["pairs"] == script.compare(result["runs"])
    verdicts = [script.verdict(result["pairs"], v) for v in dict.fromkeys(p["variant"] for p in result["pairs"])]
    assert result["verdicts"] == verdicts
    assert {(p["source"], p["target"]) for p in result["pairs"]} == {("vgg11", "vgg19"), ("resnet20", "resnet56")}
    assert script.table(result["pairs"], verdicts) in (ROOT / "docs" / "benchmarks.md").read_text()


def test_the_summary_table_averages_each_variant_over_its_seeds() -> None:
    script = load_benchmark("n2n_transfer")
    rows = [
        _row("scratch", 0, [0.2, 0.8], 0.90),
        _row("transfer", 0, [0.5, 0.6], 0.94),
        _row("scratch", 1, [0.3, 0.6], 0.92),
        _row("transfer", 1, [0.6, 0.7], 0.96),
    ]
    text = script.table(script.compare(rows), [])
    assert "| vgg11 to vgg19 | transfer | 91.0 (90.0-92.0) / 95.0 (94.0-96.0) | 0.7000 / 0.6500 |" in text
