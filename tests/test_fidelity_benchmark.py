"""benchmarks/fidelity.py: its candidate sampling, its rank statistic and its replay of the final choice."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from archcompress.evaluate import Budget, EvalContext, worker_state
from archcompress.space import SpaceOptions
from benchmark_scripts import load_benchmark

fidelity = load_benchmark("fidelity")


def test_tau_is_kendalls_rank_agreement() -> None:
    assert fidelity.tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert fidelity.tau([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert fidelity.tau([1, 2, 4, 3], [10, 20, 30, 40]) == pytest.approx(2 / 3)


def test_the_choice_replays_pick_what_compress_would() -> None:
    rows = [  # short@1 ranks b > a > c > d; short@10 among the top three ranks c best
        {"test_accuracy": 0.90, "short_val_accuracy": {"1": 0.30, "10": 0.80}},  # a
        {"test_accuracy": 0.85, "short_val_accuracy": {"1": 0.35, "10": 0.70}},  # b
        {"test_accuracy": 0.95, "short_val_accuracy": {"1": 0.25, "10": 0.90}},  # c
        {"test_accuracy": 0.97, "short_val_accuracy": {"1": 0.10, "10": 0.95}},  # d: best, but not a finalist
    ]
    choices = fidelity.choice_replays(rows, [1, 10])
    assert choices["best possible"]["test_accuracy"] == 0.97
    assert choices["best short_acc@1"] == {"test_accuracy": 0.85, "epochs": 4}
    assert choices["finalists 3 x 10 epochs"] == {"test_accuracy": 0.95, "epochs": 4 + 30}


def test_sampled_candidates_are_distinct_valid_and_in_the_ratio_window(tiny_teacher: Path, tmp_path: Path) -> None:
    import archcompress

    teacher = archcompress.load_teacher(tiny_teacher)
    context = EvalContext(str(tiny_teacher), teacher.sha256, "digits", archcompress.DataOptions(), Budget(),
                          str(tmp_path / "logits"), space=SpaceOptions(min_channels=1))  # fmt: skip
    state = worker_state(context)
    args = argparse.Namespace(seed=0, candidates=5, min_ratio=4.0, max_ratio=40.0)
    candidates = fidelity.sample_candidates(state, args)
    space = state.space
    assert len({space.candidate_hash(c) for c in candidates}) == 5
    for candidate in candidates:
        assert space.check(candidate) is None
        assert 4.0 <= space.teacher_cost.params / space.cost(candidate).params <= 40.0


def test_the_asha_replay_ranks_the_highest_rung_first_and_counts_epochs() -> None:
    curves = [[0.5, 0.9], [0.6, 0.6], [0.1, 0.2]]  # a late bloomer, an early leader, a poor one
    order, epochs = fidelity.asha_ranking(curves, (1, 2), 1 / 3)
    assert order == [1, 0, 2]  # only the early leader went up (one in three), so it ranks first
    assert epochs == 3 * 1 + 1  # three first rungs, one promotion by one more epoch
    proxies = fidelity.proxy_taus(
        [{"test_accuracy": t, "val_accuracy_curve": [0.0], "val_l2_curve": [0.0], "short_val_accuracy": {"1": s},
          "params": 1, "macs": 1, "rung_val_accuracy": {"1,2": c}}
         for t, s, c in zip([0.9, 0.8, 0.1], [0.2, 0.3, 0.1], curves, strict=True)],
        [1], [1],
    )  # fmt: skip
    chosen = fidelity.chosen_proxy(proxies)
    assert chosen is not None and chosen["proxy"] == "rungs 1,2 (ASHA)" and chosen["epochs_per_candidate"] == 1.33
