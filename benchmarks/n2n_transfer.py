"""Do N2N policies transfer? A policy trained on a small teacher, reused on a larger one, versus from scratch.

Scaled down from the paper's experiment, on ``digits`` (CPU): the source teacher is VGG-11 at width 0.25, the
target teacher VGG-16 at width 0.25 (a deeper network with more units; the policies read only
size-independent unit features, so they run on it unchanged). N2N is trained on the source for
``--source-evaluations``; then, for each seed, N2N runs on the target from scratch and from the transferred
policies with the same budget and evaluator. Reported: the evaluations each run needed to reach the
from-scratch run's final best reward, and both runs' mean reward over their first 25 evaluations. Writes
``benchmarks/results/n2n_transfer.json``.

    .venv/bin/python benchmarks/n2n_transfer.py [--evaluations 100] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.evaluate import Budget, Evaluator, ResultStore, make_executor
from archcompress.search.n2n.search import N2NOptions, N2NSearch
from common import digits_teacher, search_summary

RESULTS = Path(__file__).parent / "results" / "n2n_transfer.json"


def evaluations_to_reach(curve: list[float], level: float) -> int | None:
    """1-based index of the first evaluation whose best-so-far reward reaches ``level`` (None: never)."""
    return next((i + 1 for i, value in enumerate(curve) if value >= level - 1e-12), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-evaluations", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs per candidate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="archcompress-transfer-"))
    os.environ["ARCHCOMPRESS_HOME"] = str(work / "home")
    budget = Budget(epochs=args.epochs)
    source = digits_teacher(work, "vgg11", 0.25, budget)
    target = digits_teacher(work, "vgg16", 0.25, budget)

    print(f"training the N2N policies on the source teacher ({args.source_evaluations} evaluations) ...")
    source_search = N2NSearch(source.state.space, N2NOptions(), source.stats, args.source_evaluations, 0)
    source_evaluator = Evaluator(source.context, ResultStore(work / "source.sqlite"), make_executor("inline"),
                                 space=source.state.space)  # fmt: skip
    source_run = search_summary(source_search, source_evaluator, args.source_evaluations, source_search.reward)
    policies = work / "policies"
    policies.mkdir()
    source_search.save_policies(policies)

    space = target.state.space
    per_seed: list[dict[str, Any]] = []
    for seed in args.seeds:
        evaluator = Evaluator(target.context, ResultStore(work / f"target-{seed}.sqlite"), make_executor("inline"),
                              seed=seed, space=space)  # fmt: skip
        row: dict[str, Any] = {"seed": seed}
        for name, options in (("scratch", N2NOptions()), ("transfer", N2NOptions(policy=str(policies)))):
            search = N2NSearch(space, options, target.stats, args.evaluations, seed)
            print(f"seed {seed}: N2N on the target teacher, {name} ...")
            row[name] = search_summary(search, evaluator, args.evaluations, search.reward)
        level = row["scratch"]["best_reward"]
        for name in ("scratch", "transfer"):
            row[name]["evaluations_to_scratch_best"] = evaluations_to_reach(row[name]["best_reward_curve"], level)
            row[name]["best_reward_curve"] = row[name]["best_reward_curve"][::5]
        per_seed.append(row)

    report = {
        "question": "do N2N policies trained on a small teacher speed up the search on a larger one? (digits)",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "source": {"teacher": "vgg11 width 0.25", "params": source.stats.params,
                   "evaluations": args.source_evaluations, "best_reward": source_run["best_reward"],
                   "mean_last_50": source_run["mean_last_50"]},
        "target": {"teacher": "vgg16 width 0.25", "params": target.stats.params, "evaluations": args.evaluations},
        "candidate_budget": {"epochs": budget.epochs, "init": budget.init},
        "seeds": per_seed,
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'seed':<6}{'run':<10}{'best':>8}{'evals to scratch best':>22}{'mean first 25':>15}{'seconds':>9}")
    for row in per_seed:
        for name in ("scratch", "transfer"):
            r = row[name]
            reach = r["evaluations_to_scratch_best"] or "never"
            print(f"{row['seed']:<6}{name:<10}{r['best_reward']:8.4f}{reach!s:>22}{r['mean_first_25']:15.4f}"
                  f"{r['seconds']:9.0f}")  # fmt: skip
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
