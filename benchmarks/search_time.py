"""What multi-fidelity evaluation costs: the wall time of one N2N search at the same ``--budget``, with the
previous defaults (every candidate distilled ``--epochs`` once: 2 was the fast preset's, 1 the quality
benchmarks'; the N2N code's removable units; no fitting to the limit) and with today's (rungs after 1, 3 and 9
epochs, hidden linear layers removable, stage-2 proposals fitted to the parameter limit), run in turn, side by
side, on one machine.

    .venv/bin/python benchmarks/search_time.py --model cnn1d --dataset mnist1d --target 300 --budget 100 \
        --epochs 1 2

Each search is a real ``archcompress.compress`` run with a one-epoch final distillation (not timed: the report's
``search.seconds`` is). Results go to ``benchmarks/results/search_time-MODEL-DATASET.json``. Timings depend on
the machine's load: the results say what else was running (``--note``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.config import FAST_RUNGS
from archcompress.distill import TrainConfig
from archcompress.evaluate import Budget, SpaceOptions
from archcompress.runtime import atomic_write_text, cache_home
from archcompress.search.n2n.search import N2NOptions
from archcompress.space.options import DEFAULT_REMOVABLE, N2N_CODE_REMOVABLE

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = (0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2], help="the one-fidelity searches' epochs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    return parser.parse_args()


def search_seconds(teacher: Path, args: argparse.Namespace, seed: int, epochs: int | None) -> dict[str, Any]:
    """One N2N search (and a one-epoch final distillation) in a temporary run directory: one fidelity of
    ``epochs`` with the previous defaults, or (None) today's."""
    rungs = epochs is None
    shared = {"batch_size": 32, "lr": 1e-3}  # the quality benchmarks' candidate training, space and N2N settings
    candidate = Budget(rungs=FAST_RUNGS, **shared) if rungs else Budget(epochs=epochs, **shared)  # type: ignore[arg-type]
    space = SpaceOptions(ratios=RATIOS, min_channels=2, removable=DEFAULT_REMOVABLE if rungs else N2N_CODE_REMOVABLE)
    options = N2NOptions(reward="log", stage1_share=0.3, fit_to_limit=rungs)
    work = Path(tempfile.mkdtemp(prefix="search-time-"))
    try:
        report = archcompress.compress(
            teacher, work / "run", method="n2n", budget=args.budget, target=args.target, seed=seed, final_epochs=1,
            candidate=candidate, space=space, n2n=options,
        ).report  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    search = report["search"]
    per_rung = search.get("rungs", {}).get("candidates")
    rung_epochs = list(FAST_RUNGS) if rungs else None
    return {"seed": seed, "epochs": epochs, "rungs": rung_epochs, "seconds": search["seconds"],
            "evaluations": search["evaluations"], "candidates_per_rung": per_rung}  # fmt: skip


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    teacher = cache_home() / "bench" / f"search-time-{args.model}-{args.dataset}" / "teacher.pt"
    if not teacher.is_file():
        print(f"training the teacher: {args.model} on {args.dataset}, {args.teacher_epochs} epochs", flush=True)
        train_teacher(args.model, args.dataset, teacher, train=TrainConfig(epochs=args.teacher_epochs, seed=0))
    runs = []
    variants: list[int | None] = [*args.epochs, None]
    for seed in args.seeds:
        for epochs in variants:  # in turn, so that a change of load hits every variant alike
            runs.append(search_seconds(teacher, args, seed, epochs))
            label = "rungs" if epochs is None else f"{epochs} epoch(s)"
            print(f"seed {seed}, {label}: {runs[-1]['seconds']:.1f} s", flush=True)
    multi = [r["seconds"] for r in runs if r["epochs"] is None]
    comparisons = []
    for epochs in args.epochs:
        one = [r["seconds"] for r in runs if r["epochs"] == epochs]
        ratios = [m / o for m, o in zip(multi, one, strict=True)]
        comparisons.append({"one_fidelity_epochs": epochs, "one_fidelity_seconds_mean": statistics.fmean(one),
                            "rungs_seconds_mean": statistics.fmean(multi), "ratio_per_seed": ratios,
                            "ratio_mean": statistics.fmean(ratios)})  # fmt: skip
    result = {
        "question": "how much longer does a search take with rungs than with one fidelity, at the same --budget?",
        "setting": {k: v for k, v in vars(args).items() if k not in ("threads", "note")},
        "one_fidelity": {"removable": list(N2N_CODE_REMOVABLE), "fit_to_limit": False},
        "rungs": {"epochs": list(FAST_RUNGS), "removable": list(DEFAULT_REMOVABLE), "fit_to_limit": True},
        "runs": runs,
        "comparisons": comparisons,
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "note": args.note,
        },
    }
    path = RESULTS / f"search_time-{args.model}-{args.dataset}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    for comparison in comparisons:
        print(f"rungs / one fidelity of {comparison['one_fidelity_epochs']} epoch(s): {comparison['ratio_mean']:.2f}x")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
