"""Does removing a strided conv (its downsampling kept by a pooling) give better small students of the 1-D CNN?

Hand-picked students of one size class: the hidden fully connected layer removed (as the good 300x students do),
and every subset of the three strided convs removed, each at the widest uniform width ratio that stays within the
teacher's parameters / ``--target``. Each is distilled as the final student of ``compress`` is
(inherited weights, L2 on the teacher's logits, Adam, one cosine schedule over ``--epochs``) for every seed and
tested once.

    .venv/bin/python benchmarks/strided.py --teacher ~/.cache/archcompress/bench/cnn1d-mnist1d-linear/teacher.pt

Writes ``benchmarks/results/strided-cnn1d-mnist1d.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions
from archcompress.distill import TrainConfig, evaluate_accuracy, fit
from archcompress.evaluate import Budget, EvalContext, worker_state
from archcompress.runtime import atomic_write_text, cache_home, seed_everything
from archcompress.space import SpaceOptions

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = (0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0)  # the quality benchmarks' ratio set
REMOVABLE = ("block", "body", "max-pool", "linear", "strided-conv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=None, help="a cnn1d mnist1d teacher [trained if missing]")
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = cache_home() / "bench" / "strided-cnn1d-mnist1d"
    teacher_path = args.teacher or work / "teacher.pt"
    if not teacher_path.is_file():
        train_teacher("cnn1d", "mnist1d", teacher_path, train=TrainConfig(epochs=30, seed=0))
    teacher = archcompress.load_teacher(teacher_path)
    budget = Budget(epochs=args.epochs, batch_size=32, lr=1e-3)
    options = SpaceOptions(ratios=RATIOS, min_channels=2, removable=REMOVABLE)
    context = EvalContext(str(teacher_path), teacher.sha256, "mnist1d", DataOptions(), budget,
                          str(work / "logits"), space=options)  # fmt: skip
    state = worker_state(context)
    space = state.space
    strided = [u.index for u in space.units if u.kind == "conv" and u.removable]  # the first conv never is
    hidden = next(u.index for u in space.units if u.kind == "linear" and u.removable)
    max_params = space.teacher_cost.params / args.target
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    subsets = [list(c) for count in range(len(strided) + 1) for c in itertools.combinations(strided, count)]
    for subset in subsets:
        removed = [hidden, *subset]
        keep = tuple(unit not in removed for unit in space.removable_units)
        ratio = space.largest_uniform_ratio(keep, max_params)
        assert ratio is not None
        candidate = space.uniform_candidate(ratio, keep)
        cost = space.cost(candidate)
        accuracies = []
        for seed in args.seeds:
            seed_everything(seed)
            built = space.build(candidate, inherit=True)
            fit(built.module, state.train, None, budget.loss_fn(state.targets), budget.train_config(seed), state.device)
            accuracies.append(evaluate_accuracy(built.module, state.splits.test, state.device))
        names = [space.units[u].name for u in subset]
        rows.append({"strided_convs_removed": names, "width_ratio": ratio, "params": cost.params,
                     "macs": cost.macs, "test_accuracy": accuracies, "candidate": candidate.to_dict()})  # fmt: skip
        tests = ", ".join(f"{a:.2%}" for a in accuracies)
        print(f"removed {names or 'none'}: ratio {ratio:.4f}, {cost.params} params, {cost.macs} MACs, test {tests} "
              f"(mean {statistics.mean(accuracies):.2%})", flush=True)  # fmt: skip
    result = {"setting": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "teacher": {"params": space.teacher_cost.params, "test_accuracy": teacher.meta.test_accuracy},
              "students": rows, "meta": {"archcompress": archcompress.__version__, "torch": torch.__version__,
              "machine": platform.platform(), "seconds": time.perf_counter() - started}}  # fmt: skip
    path = RESULTS / "strided-cnn1d-mnist1d.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
