"""Does parallel search pay off on a small CPU machine, and how many threads should one evaluation use?

1. One N2N search of ``--evaluations`` (60) distinct candidates on the 1-D CNN (``cnn1d``) teacher on ``mnist1d``
   at ``--target`` 300x, run three times through ``archcompress.compress``: ``inline``, ``process`` and ``ray`` with
   ``--workers`` 2, worker start-up included (the search's own seconds, as the run's report gives them). Threads
   per evaluation are chosen by student size (the default), so tiny students train on one thread each.
2. One distillation epoch of a tiny student (~3k params) and a large one (the teacher's size) with 1 and 2 torch
   threads, once with nothing added by this script and once while two busy-looping processes load both cores.

Writes ``benchmarks/results/parallel.json`` with the machine's load average before each measurement: on a machine
shared with other work the timings are not measurements of parallel speed-up, and the file says so.

    .venv/bin/python benchmarks/parallel.py [--evaluations 60] [--workers 2] [--executors inline process ray]
        [--machine-shared]   # when other work runs on the machine (top shows it): the results then say so
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions
from archcompress.distill import CachedLogits, TrainConfig, fit, make_distill_loss
from archcompress.evaluate import Budget, EvalContext, SpaceOptions, worker_state
from archcompress.runtime import torch_threads

RESULTS = Path(__file__).parent / "results" / "parallel.json"
BURN = "while True: pass"
# the space of the quality benchmark's cnn1d runs (bench-small): narrow ratios reach 300x
SPACE = SpaceOptions(ratios=(0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0), min_channels=2, removable=("block", "body"))


SHARED_NOTE = (
    "measured on a machine shared with other work (see each load_average_before): not a measurement of parallel "
    "speed-up on an idle machine"
)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def search_seconds(teacher: Path, work: Path, executor: str, args: argparse.Namespace) -> dict[str, Any]:
    """One N2N search through the public API; its report's search seconds include the executor's start-up."""
    load = load_average()
    started = time.perf_counter()
    result = archcompress.compress(
        teacher, work / f"run-{executor}", method="n2n", budget=args.evaluations, target=args.target, seed=0,
        executor=executor, workers=args.workers, final_epochs=1, device="cpu", settings={"candidate.epochs": 1},
        space=SPACE,
    )  # fmt: skip
    search = result.report["search"]
    return {
        "search_seconds": search["seconds"],
        "run_seconds": time.perf_counter() - started,
        "evaluations": search["evaluations"],
        "statuses": search["statuses"],
        "load_average_before": load,
    }


def epoch_seconds(context: EvalContext, ratio_params: int | None, threads: int) -> tuple[float, int, int]:
    """Seconds of one distillation epoch of the student closest to ``ratio_params`` params (None: the teacher's
    size) with ``threads`` torch threads; also its params and MACs per sample."""
    state = worker_state(context)
    space = state.space
    if ratio_params is None:
        candidate = space.uniform_candidate(1.0)
    else:
        candidates = [space.uniform_candidate(r) for r in SPACE.ratios]
        candidate = min(candidates, key=lambda c: abs(space.cost(c).params - ratio_params))
    cost = space.cost(candidate)
    assert isinstance(state.targets, CachedLogits)
    loss = make_distill_loss("l2", state.targets)
    config = TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=5e-4, schedule="none", augment=False)
    with torch_threads(threads):
        fit(space.build(candidate).module, state.train, None, loss, config, torch.device("cpu"))  # warm-up
        started = time.perf_counter()
        fit(space.build(candidate).module, state.train, None, loss, config, torch.device("cpu"))
        return time.perf_counter() - started, cost.params, cost.macs


def thread_figures(context: EvalContext) -> list[dict[str, Any]]:
    rows = []
    for loaded in (False, True):
        burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2 if loaded else 0)]
        try:
            time.sleep(1.0 if loaded else 0.0)
            for name, params in (("tiny", 3000), ("large", None)):
                for threads in (1, 2):
                    load = load_average()
                    seconds, student_params, macs = epoch_seconds(context, params, threads)
                    rows.append({"student": name, "params": student_params, "macs": macs, "threads": threads,
                                 "added_load": "2 busy-looping processes" if loaded else "none",
                                 "epoch_seconds": seconds, "load_average_before": load})  # fmt: skip
                    print(f"{name} ({student_params} params), {threads} thread(s), "
                          f"{'loaded' if loaded else 'as found'}: {seconds:.2f} s")  # fmt: skip
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
    return rows


def markdown_tables(result: dict[str, Any]) -> str:
    """The two tables of docs/benchmarks.md, made from a parallel.json (a test checks that the doc shows them)."""
    lines = [
        "| executor (2 workers) | search seconds | vs inline | load average before (1, 5, 15 min) |",
        "|---|---|---|---|",
    ]
    inline = result.get("inline_seconds")
    for name, row in result["executors"].items():
        ratio = f"{inline / row['search_seconds']:.2f}x" if inline else "-"
        load = ", ".join(f"{x:g}" for x in row["load_average_before"])
        lines.append(f"| {name} | {row['search_seconds']:.1f} | {ratio} | {load} |")
    lines += [
        "",
        "| student | params | MACs | threads | load added | epoch seconds | load average before |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["threads"]:
        load = ", ".join(f"{x:g}" for x in row["load_average_before"])
        lines.append(f"| {row['student']} | {row['params']} | {row['macs']} | {row['threads']} | {row['added_load']} "
                     f"| {row['epoch_seconds']:.2f} | {load} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--target", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executors", nargs="+", default=["inline", "process", "ray"])
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-threads", action="store_true", help="only the executor comparison")
    parser.add_argument(
        "--machine-shared", action="store_true", help="record that other work shared the machine (see top first)"
    )
    parser.add_argument("--table", type=Path, default=None, help="print the doc tables of this parallel.json, exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_tables(json.loads(args.table.read_text())))
        return

    work = Path(tempfile.mkdtemp(prefix="archcompress-parallel-"))
    os.environ["ARCHCOMPRESS_HOME"] = str(work / "home")
    teacher = work / "cnn1d.pt"
    print(f"training the teacher (cnn1d, mnist1d, {args.teacher_epochs} epochs) ...")
    train_teacher("cnn1d", "mnist1d", teacher, train=TrainConfig(epochs=args.teacher_epochs, augment=False),
                  device="cpu")  # fmt: skip
    sha = archcompress.load_teacher(teacher).sha256
    context = EvalContext(str(teacher), sha, "mnist1d", DataOptions(), Budget(epochs=1), str(work / "home" / "logits"),
                          space=SPACE)  # fmt: skip

    executors: dict[str, Any] = {}
    for name in args.executors:
        print(f"N2N search of {args.evaluations} evaluations with the {name} executor ...")
        executors[name] = search_seconds(teacher, work, name, args)
        print(f"  {executors[name]['search_seconds']:.1f} s")
    threads = [] if args.skip_threads else thread_figures(context)

    inline = executors.get("inline", {}).get("search_seconds")
    parallel = {name: row["search_seconds"] for name, row in executors.items() if name != "inline"}
    best = min(parallel, key=lambda name: parallel[name]) if parallel else None
    speedup = inline / parallel[best] if inline and best else None
    out: dict[str, Any] = {
        "question": "does a parallel executor beat inline on 2 cores; threads per evaluation by student size",
        "machine_shared": args.machine_shared,
        "note": SHARED_NOTE if args.machine_shared else "measured on a machine with no other work running",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "archcompress": archcompress.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "search": {
            "method": "n2n",
            "teacher": "cnn1d",
            "dataset": "mnist1d",
            "target": args.target,
            "evaluations": args.evaluations,
            "workers": args.workers,
            "candidate_epochs": 1,
        },
        **{f"{name}_seconds": row["search_seconds"] for name, row in executors.items()},
        "executors": executors,
        "best_parallel": best,
        "best_parallel_vs_inline": speedup,
        "goal": "the best parallel executor at least 1.5x faster than inline",
        "threads": threads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in out if k.endswith("_seconds") or k.startswith("best")}))
    print(markdown_tables(out))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
