"""Does the CUDA path work, and how many candidates should share one GPU? (one GPU, at most ~8 minutes)

On a 32x32x3 in-memory data set (``rgb32``: the 5,000 real ``mnist5k`` digits padded to 32x32 and tinted with a
random colour per sample, so it is built offline), with a ResNet-20 teacher trained here:

1. distillation throughput (samples/s) of a ResNet-20-sized student, GPU vs CPU (AMP and channels_last on CUDA,
   data and teacher logits held on the GPU);
2. candidates per minute with k = 1, 2, 4, 8 candidates trained at once on the one GPU: k worker processes
   sharing it (``--executor process --workers k --workers-per-gpu k``), each holding the data and the teacher
   logits on the GPU once. Timed after the workers have started (start-up is recorded apart);
3. one end-to-end ``compress`` of the teacher with the paper preset in miniature, with the best k.

Writes ``benchmarks/results/gpu.json`` (``--out``). ``--device cpu --quick`` runs every step small on the CPU so
that the script is known to work before a GPU run; such a file says ``"gpu_run": false`` and must not be
published as gpu.json.

    .venv/bin/python benchmarks/gpu_check.py                      # on a GPU machine (make gpu-check)
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions
from archcompress.data.base import Augmentation, DatasetInfo
from archcompress.data.offline import load_mnist5k
from archcompress.data.registry import LoadedArrays, register_dataset
from archcompress.distill import CachedLogits, TrainConfig, fit, make_distill_loss
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Budget, EvalContext, Evaluator, ResultStore, make_executor, worker_state
from archcompress.evaluate.worker import _on_device
from archcompress.models import create_model
from archcompress.runtime import resolve_device

RESULTS = Path(__file__).parent / "results" / "gpu.json"
DATASET = "rgb32"


# Registered at import, so that the spawned worker processes (which import this script) know the data set too.
@register_dataset(DATASET, "mnist5k padded to 32x32, tinted with a random colour per sample (benchmark only)", False)
def load_rgb32(options: DataOptions) -> LoadedArrays:
    """5,000 real digits as 3x32x32 uint8 images; the tint (seed 0) is a nuisance the student must ignore."""
    base = load_mnist5k(options)
    raw, labels = base.train_x, base.train_y  # (N, 1, 28, 28) uint8, (N,)
    tint = torch.from_numpy(np.random.default_rng(0).uniform(0.4, 1.0, (len(raw), 3, 1, 1))).float()
    images = torch.nn.functional.pad(raw.float(), (2, 2, 2, 2)) * tint  # (N, 3, 32, 32)
    info = DatasetInfo(DATASET, (3, 32, 32), 10, (0.08, 0.08, 0.08), (0.25, 0.25, 0.25), Augmentation(shift=2))
    return LoadedArrays(info, images.round().clamp(0, 255).to(torch.uint8), labels, None, None, 1.0 / 255.0)


def samples_per_second(state: Any, device: torch.device, steps: int, batch: int, width: float) -> float:
    """Distil a fresh ResNet-20 on the cached teacher logits for ``steps`` steps (after a warm-up) on ``device``."""
    train = state.train if device.type == state.device.type else _on_device(state.train, device)
    logits = state.targets.logits.to(device)
    loss = make_distill_loss("l2", CachedLogits(logits))
    config = TrainConfig(epochs=100, batch_size=batch, optimizer="adam", lr=5e-4, schedule="none", augment=False)
    student = create_model("resnet20", (3, 32, 32), 10, {"width": width})
    fit(student, train, None, loss, replace(config, max_steps=2), device)  # warm-up: kernels, allocator, autotune
    synchronize(device)
    started = time.perf_counter()
    fit(student, train, None, loss, replace(config, max_steps=steps), device)
    synchronize(device)
    return steps * batch / (time.perf_counter() - started)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def concurrency(context: EvalContext, state: Any, ks: list[int], per_k: int, work: Path) -> list[dict[str, Any]]:
    """Candidates per minute with k workers sharing the device, the same ``per_k`` candidates for every k."""
    space = state.space
    rng = np.random.default_rng(0)
    timed = [space.sample(rng) for _ in range(per_k)]
    rows = []
    for k in ks:
        executor = make_executor("process", workers=k, device=context.device, workers_per_gpu=k)
        try:
            warm = [space.sample(np.random.default_rng(1000 + k * 100 + i)) for i in range(k)]
            started = time.perf_counter()
            Evaluator(context, ResultStore(work / f"warm-{k}.sqlite"), executor, space=space).evaluate_many(warm)
            startup = time.perf_counter() - started
            started = time.perf_counter()
            store = ResultStore(work / f"timed-{k}.sqlite")
            results = Evaluator(context, store, executor, space=space).evaluate_many(timed)
            seconds = time.perf_counter() - started
        finally:
            executor.close()
        rows.append({
            "workers_per_gpu": k,
            "candidates_per_minute": 60 * len(timed) / seconds,
            "seconds": seconds,
            "candidates": len(timed),
            "startup_and_first_wave_seconds": startup,
            "statuses": sorted({r.status for r in results}),
        })  # fmt: skip
        print(f"k={k}: {rows[-1]['candidates_per_minute']:.1f} candidates/min ({seconds:.1f} s)")
    return rows


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def markdown_table(result: dict[str, Any]) -> str:
    """The table of docs/benchmarks.md, made from a gpu.json."""
    kind = "" if result["gpu_run"] else " (NOT A GPU RUN)"
    throughput = result["throughput"]
    lines = [
        f"Device: {result['device']}{kind}; torch {result['torch']}, CUDA {result['cuda']}. "
        f"Distillation of a {throughput['student']} student: {throughput['device_samples_per_second']:.0f} "
        f"samples/s on the device vs {throughput['cpu_samples_per_second']:.0f} on the CPU "
        f"({throughput['speedup']:.1f}x).",
        "",
        "| candidates at once (k) | candidates per minute | vs k = 1 |",
        "|---|---|---|",
    ]
    base = result["concurrency"][0]["candidates_per_minute"]
    for row in result["concurrency"]:
        lines.append(f"| {row['workers_per_gpu']} | {row['candidates_per_minute']:.1f} | "
                     f"{row['candidates_per_minute'] / base:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run of the script)")
    parser.add_argument("--quick", action="store_true", help="every step small: a test that the script works")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--ks", default=None, help="candidates per GPU to try, e.g. 1,2,4,8")
    parser.add_argument("--table", type=Path, default=None, help="print the doc table of this gpu.json, exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    device = resolve_device(args.device)  # refuses cuda without a GPU, in one line
    gpu_run = device.type == "cuda"
    quick = args.quick
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 2] if quick else [1, 2, 4, 8])
    begun = time.perf_counter()

    work = Path(tempfile.mkdtemp(prefix="archcompress-gpu-check-"))
    os.environ["ARCHCOMPRESS_HOME"] = str(work / "home")  # also read by the spawned workers
    teacher_path = work / "resnet20.pt"
    width = 0.25 if quick else 1.0
    teacher_train = TrainConfig(epochs=1 if quick else 4, max_steps=5 if quick else None, augment=False)
    print(f"training the teacher (resnet20 width {width}, {DATASET}) on {device} ...")
    train_teacher("resnet20", DATASET, teacher_path, model_kwargs={"width": width}, train=teacher_train,
                  device=str(device))  # fmt: skip
    sha = archcompress.load_teacher(teacher_path).sha256
    budget = Budget(epochs=1, subset=200 if quick else 2000)
    context = EvalContext(str(teacher_path), sha, DATASET, DataOptions(), budget, str(work / "home" / "logits"),
                          device=str(device))  # fmt: skip
    state = worker_state(context)

    steps, batch = (2, 32) if quick else (100, 128)
    print("distillation throughput of a ResNet-20-sized student ...")
    on_device = samples_per_second(state, device, steps, batch, width)
    on_cpu = on_device if not gpu_run else samples_per_second(state, torch.device("cpu"), 10, batch, width)
    throughput = {
        "student": f"resnet20 (width {width})",
        "batch_size": batch,
        "device_samples_per_second": on_device,
        "cpu_samples_per_second": on_cpu,
        "speedup": on_device / on_cpu,
        "cpu_threads": torch.get_num_threads(),
    }

    print(f"candidates per minute with k = {ks} at once ...")
    rows = concurrency(context, state, ks, 2 if quick else 16, work)
    base = next((row["candidates_per_minute"] for row in rows if row["workers_per_gpu"] == 1), None)
    best = max(rows, key=lambda row: row["candidates_per_minute"])
    speedup = best["candidates_per_minute"] / base if base else None

    k = best["workers_per_gpu"]
    executor = "inline" if quick else "process"  # quick: the process executor was exercised above
    print(f"one end-to-end compress (paper preset in miniature, {executor}, k = {k}) ...")
    started = time.perf_counter()
    result = archcompress.compress(
        teacher_path, work / "run", method="n2n", preset="paper", budget=2 if quick else 20, seed=0,
        device=str(device), executor=executor, workers=k, workers_per_gpu=k, final_epochs=1 if quick else 5,
        settings={"candidate.epochs": 1, "candidate.subset": 200 if quick else 2000, "n2n.rollouts": max(2, k)},
    )  # fmt: skip
    report = result.report
    end_to_end = {
        "seconds": time.perf_counter() - started,
        "evaluations": report["search"]["evaluations"],
        "budget": 2 if quick else 20,
        "executor": executor,
        "workers_per_gpu": k,
        "teacher_test_accuracy": report["teacher"].get("test_accuracy"),
        "student_test_accuracy": report["student"]["test_accuracy"],
        "compression_params": report["compression"]["params"],
        "complete": report.get("complete"),
    }

    out = {
        "question": "the CUDA path, and candidates per minute with k candidates sharing one GPU",
        "gpu_run": gpu_run,
        "note": None
        if gpu_run
        else "NOT A GPU RUN: --device cpu dry run of the script; its figures say nothing about GPUs",
        "device": torch.cuda.get_device_name(device) if gpu_run else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if gpu_run else None,
        "archcompress": archcompress.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "dataset": DATASET,
        "candidate_budget": {"epochs": budget.epochs, "subset": budget.subset, "batch_size": budget.batch_size},
        "throughput": throughput,
        "concurrency": rows,
        "best_workers_per_gpu": best["workers_per_gpu"],
        "best_vs_k1": speedup,
        "goal": "best k at least 2x the candidates per minute of k = 1, on a GPU",
        "goal_met": bool(gpu_run and speedup is not None and speedup >= 2),
        "end_to_end": end_to_end,
        "seconds": time.perf_counter() - begun,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({key: out[key] for key in ("device", "best_workers_per_gpu", "best_vs_k1", "goal_met")}))
    print(markdown_table(out))
    print(f"written to {args.out} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except ArchcompressError as exc:  # bad input (e.g. --device cuda without a GPU): one line, no traceback
        sys.exit(f"error: {exc}")
