"""Does the N2N policy really learn? N2N versus random search at the same evaluation budget (CPU, digits).

For each seed, both searches run over the same compression space of a VGG-11 (width 0.25) teacher trained here
on ``digits``, with the same evaluator (same per-candidate distillation budget, same result store: a
candidate both methods propose is trained once) and the same number of evaluations. Reported per method:
the best reward found and the mean reward of the last 50 evaluations (the paper's reward,
``C (2 - C) * acc / acc_teacher``, -1 for students that do not train). Writes
``benchmarks/results/n2n_vs_random.json``.

    .venv/bin/python benchmarks/n2n_vs_random.py [--evaluations 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.evaluate import Budget, Evaluator, ResultStore, make_executor
from archcompress.search import RandomSearch, Search
from archcompress.search.n2n.search import STAGE1_WIDTHS, N2NOptions, N2NSearch
from common import digits_teacher, search_summary

RESULTS = Path(__file__).parent / "results" / "n2n_vs_random.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs per candidate")
    parser.add_argument("--entropy-weight", type=float, default=0.0, help="N2N entropy bonus")
    parser.add_argument("--stage2-bases", type=int, default=1, help="N2N: stage-1 architectures stage 2 shrinks")
    parser.add_argument("--stage1-share", type=float, default=0.5, help="N2N: share of evaluations for stage 1")
    parser.add_argument("--stage1-width", default=N2NOptions.stage1_width, choices=STAGE1_WIDTHS, help="N2N")
    parser.add_argument("--stall-updates", type=int, default=N2NOptions.stall_updates, help="N2N: 0 = no restarts")
    parser.add_argument("--methods", nargs="+", default=["n2n", "random"], choices=["n2n", "random"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    work = Path(tempfile.mkdtemp(prefix="archcompress-n2n-"))
    os.environ["ARCHCOMPRESS_HOME"] = str(work / "home")
    bench = digits_teacher(work, "vgg11", 0.25, Budget(epochs=args.epochs))
    context, space, stats = bench.context, bench.state.space, bench.stats
    budget = context.budget
    teacher_accuracy = stats.accuracy
    options = N2NOptions(
        entropy_weight=args.entropy_weight, stage2_bases=args.stage2_bases, stage1_share=args.stage1_share,
        stage1_width=args.stage1_width, stall_updates=args.stall_updates,
    )  # fmt: skip
    scorer = N2NSearch(space, options, stats, args.evaluations, 0)  # only its reward function is used

    per_seed: list[dict[str, Any]] = []
    for seed in args.seeds:
        store = ResultStore(work / f"store-{seed}.sqlite")
        evaluator = Evaluator(context, store, make_executor("inline"), seed=seed, space=space)
        row: dict[str, Any] = {"seed": seed}
        for name in args.methods:
            search: Search = (
                N2NSearch(space, options, stats, args.evaluations, seed) if name == "n2n" else RandomSearch(space, seed)
            )
            print(f"seed {seed}: {name} search, {args.evaluations} evaluations ...")
            row[name] = search_summary(search, evaluator, args.evaluations, scorer.reward)
            row[name]["best_reward_curve"] = row[name]["best_reward_curve"][::10]
            print(f"  best reward {row[name]['best_reward']:.4f}, mean of last 50 {row[name]['mean_last_50']:.4f}, "
                  f"{row[name]['seconds']:.0f}s")  # fmt: skip
        per_seed.append(row)

    summary = {
        name: {
            "best_reward_mean": statistics.fmean(r[name]["best_reward"] for r in per_seed),
            "mean_last_50_mean": statistics.fmean(r[name]["mean_last_50"] for r in per_seed),
        }
        for name in args.methods
    }
    wins = (
        None
        if len(args.methods) < 2
        else {
            "best_reward": sum(r["n2n"]["best_reward"] > r["random"]["best_reward"] for r in per_seed),
            "mean_last_50": sum(r["n2n"]["mean_last_50"] > r["random"]["mean_last_50"] for r in per_seed),
        }
    )
    report = {
        "question": "does N2N beat random search at the same evaluation budget? (digits, CPU)",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "teacher": {
            "model": "vgg11 width 0.25",
            "dataset": "digits",
            "params": stats.params,
            "val_accuracy": teacher_accuracy,
        },
        "evaluations": args.evaluations,
        "candidate_budget": {"epochs": budget.epochs, "init": budget.init, "loss": budget.loss},
        "n2n_options": options.__dict__,
        "seeds": per_seed,
        "summary": summary,
        "n2n_wins_of_seeds": wins,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'seed':<6}{'method':<8}{'best reward':>12}{'mean last 50':>14}{'seconds':>9}")
    for row in per_seed:
        for name in args.methods:
            r = row[name]
            print(f"{row['seed']:<6}{name:<8}{r['best_reward']:12.4f}{r['mean_last_50']:14.4f}{r['seconds']:9.0f}")
    if wins:
        best, last = wins["best_reward"], wins["mean_last_50"]
        print(f"N2N wins (of {len(per_seed)} seeds): best reward {best}, last-50 mean {last}")
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
