"""What multi-fidelity evaluation costs: the wall time of one N2N search at the same ``--budget``, with the
previous defaults (every candidate distilled ``--epochs`` once, the N2N code's removable units) and with today's
(rungs after 1, 3 and 9 epochs, hidden linear layers removable), run alternately, side by side, on one machine.

    .venv/bin/python benchmarks/search_time.py --model cnn1d --dataset mnist1d --target 300 --budget 100

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
from archcompress.space.options import DEFAULT_REMOVABLE, N2N_CODE_REMOVABLE

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2, help="the one-fidelity search's epochs per candidate")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    return parser.parse_args()


def search_seconds(teacher: Path, args: argparse.Namespace, seed: int, rungs: bool) -> dict[str, Any]:
    """One N2N search (and a one-epoch final distillation) in a temporary run directory."""
    candidate = Budget(rungs=FAST_RUNGS) if rungs else Budget(epochs=args.epochs)
    space = SpaceOptions(removable=DEFAULT_REMOVABLE if rungs else N2N_CODE_REMOVABLE)
    work = Path(tempfile.mkdtemp(prefix="search-time-"))
    try:
        report = archcompress.compress(
            teacher, work / "run", method="n2n", budget=args.budget, target=args.target, seed=seed, final_epochs=1,
            candidate=candidate, space=space,
        ).report  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    search = report["search"]
    per_rung = search.get("rungs", {}).get("candidates")
    rung_epochs = list(FAST_RUNGS) if rungs else None
    return {"seed": seed, "rungs": rung_epochs, "seconds": search["seconds"], "evaluations": search["evaluations"],
            "candidates_per_rung": per_rung}  # fmt: skip


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    teacher = cache_home() / "bench" / f"search-time-{args.model}-{args.dataset}" / "teacher.pt"
    if not teacher.is_file():
        print(f"training the teacher: {args.model} on {args.dataset}, {args.teacher_epochs} epochs", flush=True)
        train_teacher(args.model, args.dataset, teacher, train=TrainConfig(epochs=args.teacher_epochs, seed=0))
    runs = []
    for seed in args.seeds:
        for rungs in (False, True):  # alternately, so that a change of load hits both alike
            runs.append(search_seconds(teacher, args, seed, rungs))
            print(f"seed {seed}, {'rungs' if rungs else f'{args.epochs} epochs'}: {runs[-1]['seconds']:.1f} s",
                  flush=True)  # fmt: skip
    one = [r["seconds"] for r in runs if r["rungs"] is None]
    multi = [r["seconds"] for r in runs if r["rungs"] is not None]
    ratios = [m / o for m, o in zip(multi, one, strict=True)]
    result = {
        "question": "how much longer does a search take with rungs than with one fidelity, at the same --budget?",
        "setting": {k: v for k, v in vars(args).items() if k not in ("threads", "note")},
        "one_fidelity": {"epochs": args.epochs, "removable": list(N2N_CODE_REMOVABLE)},
        "rungs": {"epochs": list(FAST_RUNGS), "removable": list(DEFAULT_REMOVABLE)},
        "runs": runs,
        "one_fidelity_seconds_mean": statistics.fmean(one),
        "rungs_seconds_mean": statistics.fmean(multi),
        "ratio_per_seed": ratios,
        "ratio_mean": statistics.fmean(ratios),
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
    print(f"rungs / one fidelity ({args.epochs} epochs): {result['ratio_mean']:.2f}x per search; written to {path}")


if __name__ == "__main__":
    main()
