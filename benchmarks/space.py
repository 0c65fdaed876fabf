"""How long does the compression space take to import a teacher and to build students, on this CPU?

Times ``CompressionSpace.from_model`` (fx trace + one shape-propagation forward pass), ``check``/``cost``
(no build) and ``build`` (inherit and scratch) for torchvision ResNet-50 at 224x224 and 32x32, plus a few
smaller teachers for context. Writes ``benchmarks/results/space.json``.

    .venv/bin/python benchmarks/space.py [--threads 1] [--builds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import archcompress
from archcompress.models import create_model
from archcompress.space import CompressionSpace

TEACHERS = [
    ("torchvision:resnet50", (3, 224, 224)),
    ("torchvision:resnet50", (3, 32, 32)),
    ("torchvision:mobilenet_v2", (3, 224, 224)),
    ("resnet56", (3, 32, 32)),
    ("vgg16", (3, 32, 32)),
]
RESULTS = Path(__file__).parent / "results" / "space.json"


def _seconds(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def bench_teacher(ref: str, shape: tuple[int, ...], builds: int) -> dict[str, Any]:
    """Import, check/cost and build timings for one teacher."""
    torch.manual_seed(0)
    model = create_model(ref, shape, 10).eval()
    import_times = _seconds(lambda: CompressionSpace.from_model(model, shape), 3)
    space = CompressionSpace.from_model(model, shape)
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(builds)]
    check_times = _seconds(lambda: [space.check(c) for c in candidates], 3)
    teacher_build = _seconds(lambda: space.build(space.teacher_candidate()), 3)
    inherit = [t for c in candidates for t in _seconds(lambda c=c: space.build(c), 1)]
    scratch = [t for c in candidates for t in _seconds(lambda c=c: space.build(c, inherit=False), 1)]
    costs = [space.cost(c) for c in candidates]
    return {
        "teacher": ref,
        "input_shape": list(shape),
        "units": len(space.units),
        "removable": len(space.removable_units),
        "shrink_groups": len(space.shrink_groups),
        "teacher_params": space.teacher_cost.params,
        "teacher_macs": space.teacher_cost.macs,
        "import": _summary(import_times),
        "check_per_candidate_ms": 1000 * statistics.median(check_times) / builds,
        "build_teacher_candidate": _summary(teacher_build),
        "build_random_inherit": _summary(inherit),
        "build_random_scratch": _summary(scratch),
        "random_student_params_median": int(statistics.median(c.params for c in costs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--builds", type=int, default=10, help="random candidates built per teacher")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for ref, shape in TEACHERS:
        row = bench_teacher(ref, shape, args.builds)
        rows.append(row)
        print(
            f"{ref:26s} {'x'.join(map(str, shape)):>9s}  units {row['units']:3d}  "
            f"import {row['import']['median_s']:.3f}s  check {row['check_per_candidate_ms']:.2f}ms  "
            f"build teacher {row['build_teacher_candidate']['median_s']:.3f}s  "
            f"build random {row['build_random_inherit']['median_s']:.3f}s (inherit) / "
            f"{row['build_random_scratch']['median_s']:.3f}s (scratch)"
        )
    result = {
        "question": "time to import a teacher into the compression space and to build students (CPU)",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "builds_per_teacher": args.builds,
        "teachers": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
