"""How fast is candidate evaluation, and what do the cache and the executors buy? (CPU, offline data)

Measured side by side in one run, on a VGG-11 (width 0.5) teacher trained here on ``mnist5k``:

1. training throughput of our trainer (``distill.fit`` with cached teacher logits) versus a bare, hand-written
   PyTorch loop training the same student on the same tensors with the same optimiser and batch size;
2. cached teacher logits versus running the teacher on every step (``LiveTeacher``);
3. candidates per minute through the evaluator with the ``inline``, ``process`` and ``ray`` executors on the
   same 8 small candidates (2 workers; worker start-up included, as a search would pay it).

Writes ``benchmarks/results/evaluate.json``.

    .venv/bin/python benchmarks/evaluate.py [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions
from archcompress.distill import CachedLogits, LiveTeacher, TrainConfig, fit, make_distill_loss
from archcompress.evaluate import Budget, EvalContext, Evaluator, ResultStore, make_executor, worker_state
from archcompress.evaluate.worker import training_logits

RESULTS = Path(__file__).parent / "results" / "evaluate.json"


def bare_loop(student: torch.nn.Module, x: torch.Tensor, z: torch.Tensor, epochs: int, batch: int) -> None:
    """The simplest correct loop: shuffled mini-batches, L2 to the teacher logits, Adam."""
    optimizer = torch.optim.Adam(student.parameters(), lr=5e-4, weight_decay=5e-4)
    student.train()
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            loss = (student(x[index]) - z[index]).pow(2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed training run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each training variant")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="archcompress-bench-"))
    os.environ["ARCHCOMPRESS_HOME"] = str(work / "home")
    teacher_path = work / "teacher.pt"
    print("training the teacher (vgg11 width 0.5, mnist5k, 3 epochs) ...")
    train_teacher("vgg11", "mnist5k", teacher_path, model_kwargs={"width": 0.5}, train=TrainConfig(epochs=3))
    sha = archcompress.load_teacher(teacher_path).sha256
    budget = Budget(epochs=1, subset=1000)
    context = EvalContext(str(teacher_path), sha, "mnist5k", DataOptions(), budget, str(work / "home" / "logits"))
    state = worker_state(context)
    space, device = state.space, torch.device("cpu")
    candidate = space.uniform_candidate(0.5)
    train = state.splits.train
    logits = CachedLogits(training_logits(context, state.teacher, state.splits, device))  # whole train split
    x = torch.cat([b.x for b in train.batches(4096)])  # normalised, index order (what our loader yields)
    config = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="adam", lr=5e-4, schedule="none", augment=False)

    def ours() -> None:
        fit(space.build(candidate).module, train, None, make_distill_loss("l2", logits), config, device)

    def bare() -> None:
        bare_loop(space.build(candidate).module, x, logits.logits, args.epochs, 64)

    def live() -> None:
        teacher = LiveTeacher(state.teacher.model)
        fit(space.build(candidate).module, train, None, make_distill_loss("l2", teacher), config, device)

    print("timing training loops (ours, bare, live teacher), interleaved ...")
    times: dict[str, list[float]] = {"ours": [], "bare": [], "live_teacher": []}
    ours()  # warm-up
    for _ in range(args.repeats):
        times["ours"].append(timed(ours))
        times["bare"].append(timed(bare))
        times["live_teacher"].append(timed(live))
    median = {k: statistics.median(v) for k, v in times.items()}
    samples = len(train) * args.epochs

    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(args.candidates)]
    executors: dict[str, Any] = {}
    for name in ("inline", "process", "ray"):
        print(f"evaluating {len(candidates)} candidates with the {name} executor ...")
        store = ResultStore(work / f"store-{name}.sqlite")
        executor = make_executor(name, workers=args.workers)
        try:
            start = time.perf_counter()
            results = Evaluator(context, store, executor, space=space).evaluate_many(candidates)
            seconds = time.perf_counter() - start
        finally:
            executor.close()
        executors[name] = {
            "seconds": seconds,
            "candidates_per_minute": 60 * len(candidates) / seconds,
            "statuses": sorted({r.status for r in results}),
            "val_accuracy": [r.val_accuracy for r in results],
        }

    report = {
        "question": "evaluator throughput vs a bare loop, cached vs live teacher, executors (CPU)",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "teacher": {"model": "vgg11 width 0.5", "dataset": "mnist5k", "params": space.teacher_cost.params},
        "student_params": space.cost(candidate).params,
        "training": {
            "epochs": args.epochs,
            "samples": samples,
            "seconds_median": median,
            "samples_per_second": {k: samples / v for k, v in median.items()},
            "ours_vs_bare_throughput": median["bare"] / median["ours"],
            "cached_vs_live_speedup": median["live_teacher"] / median["ours"],
            "all_seconds": times,
        },
        "executors": {
            "candidates": len(candidates),
            "workers": args.workers,
            "candidate_budget": {"epochs": budget.epochs, "subset": budget.subset},
            **executors,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print()
    print(f"{'training (' + str(samples) + ' samples)':<34} {'seconds':>9} {'samples/s':>10}")
    for name, value in median.items():
        print(f"{name:<34} {value:9.2f} {samples / value:10.0f}")
    print(f"ours / bare throughput: {report['training']['ours_vs_bare_throughput']:.2f}   "
          f"cached logits vs live teacher: {report['training']['cached_vs_live_speedup']:.2f}x faster")  # fmt: skip
    print(f"\n{'executor':<10} {'seconds':>9} {'candidates/min':>15}")
    for name in ("inline", "process", "ray"):
        row = executors[name]
        print(f"{name:<10} {row['seconds']:9.1f} {row['candidates_per_minute']:15.1f}   {row['statuses']}")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
