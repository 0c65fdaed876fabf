"""Which torchvision classification models can the compression space import, build and count exactly?

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (ViT-H/14 and RegNetY-128GF
left out for size), randomly initialised with 10 classes: import the space, build the full-width student and
compare its logits with the teacher's, build a half-width student, run it, and compare the analytic
parameter and MAC counts with the built module's. A model either passes all of that or is refused with an
``ArchcompressError`` (its one-line reason is recorded); anything else is a crash. Writes
``benchmarks/results/coverage.json``.

    .venv/bin/python benchmarks/coverage.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.models.references import torchvision_classifiers
from archcompress.space import CompressionSpace
from archcompress.space.cost import count_params, measure_macs

RESULTS = Path(__file__).parent / "results" / "coverage.json"
SKIPPED = ("vit_h_14", "regnet_y_128gf")  # too large to build in a CI run on a laptop CPU


def input_shape(name: str) -> tuple[int, int, int]:
    """Smallest convenient input per family: 299 for Inception-V3, 224 where the model fixes its size."""
    if name == "inception_v3":
        return (3, 299, 299)
    if name.startswith(("vit_", "maxvit", "swin")):
        return (3, 224, 224)
    return (3, 96, 96)


def check_model(model: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """Import, build full and half width, and compare outputs and counts; raises ``ArchcompressError``."""
    model.eval()
    space = CompressionSpace.from_model(model, shape)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = space.build(space.teacher_candidate()).module.eval()
        max_diff = float((full(x) - model(x)).abs().max())
        half = space.build(space.uniform_candidate(0.5))
        logits = half.module.eval()(x)
    return {
        "units": len(space.units),
        "teacher_params": space.teacher_cost.params,
        "full_width_max_abs_diff": max_diff,
        "half_params": half.params,
        "half_params_measured": count_params(half.module),
        "half_macs": half.macs,
        "half_macs_measured": measure_macs(half.module, shape),
        "half_output_shape": list(logits.shape),
    }


def run_one(name: str) -> dict[str, Any]:
    """The outcome for one torchvision model: ``ok`` (with counts), ``refused`` (with reason) or ``crash``."""
    shape = input_shape(name)
    start = time.perf_counter()
    model = create_model(f"torchvision:{name}", shape, 10)
    row: dict[str, Any] = {"model": name, "input_shape": list(shape)}
    try:
        row.update(check_model(model, shape))
        exact = row["half_params"] == row["half_params_measured"] and row["half_macs"] == row["half_macs_measured"]
        close = row["full_width_max_abs_diff"] <= 1e-3
        row["status"] = "ok" if exact and close and row["half_output_shape"] == [2, 10] else "wrong"
    except ArchcompressError as exc:
        row.update(status="refused", reason=str(exc))
    except Exception as exc:  # a crash is what the coverage test forbids: record it, never hide it
        row.update(status="crash", reason=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="model names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in torchvision_classifiers() if n not in SKIPPED]
    if args.only:
        names = [n for n in names if n in args.only]
    rows = []
    for name in names:
        row = run_one(name)
        rows.append(row)
        print(f"{name:22s} {row['status']:8s} {row['seconds']:6.1f}s {row.get('reason', '')[:150]}", flush=True)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "refused", "wrong", "crash")}
    print(counts)
    if args.only:
        return
    document = {
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "models": len(rows),
        "counts": counts,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
