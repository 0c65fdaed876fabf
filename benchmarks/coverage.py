"""Which torchvision and timm classification models can the compression space import, build and count exactly?

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (ViT-H/14 and RegNetY-128GF
left out for size), and every timm model of the ResNet, EfficientNet, MobileNetV3, RegNet, ConvNeXt and
DenseNet families with at most 100M parameters, randomly initialised with 10 classes: import the space, build
the full-width student and compare its logits with the teacher's, build a half-width student, run it, and
compare the analytic parameter and MAC counts with the built module's. A model either passes all of that or
is refused with an ``ArchcompressError`` (its one-line reason is recorded); anything else is a crash.
Writes ``benchmarks/results/coverage.json``.

    .venv/bin/python benchmarks/coverage.py [--source torchvision|timm|all] [--only NAME ...]
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
TIMM_FAMILIES = ("resnet*", "efficientnet*", "mobilenetv3*", "regnet*", "convnext*", "densenet*")
TIMM_MAX_PARAMS = 100_000_000


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


def timm_models() -> list[str]:
    """timm models of :data:`TIMM_FAMILIES` with at most :data:`TIMM_MAX_PARAMS` (counted on the meta device)."""
    import timm

    names = sorted({n for family in TIMM_FAMILIES for n in timm.list_models(family)})
    small = []
    for name in names:
        with torch.device("meta"):
            params = sum(p.numel() for p in timm.create_model(name, num_classes=10).parameters())
        if params <= TIMM_MAX_PARAMS:
            small.append(name)
    return small


def run_one(name: str, source: str = "torchvision") -> dict[str, Any]:
    """The outcome for one model: ``ok`` (with counts), ``refused`` (with reason), ``wrong`` or ``crash``."""
    shape = input_shape(name) if source == "torchvision" else (3, 96, 96)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = create_model(f"{source}:{name}", shape, 10)
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


def sweep(names: list[str], source: str) -> dict[str, Any]:
    """Rows and status counts for a list of models."""
    rows = []
    for name in names:
        row = run_one(name, source)
        rows.append(row)
        print(
            f"{source}:{name:28s} {row['status']:8s} {row['seconds']:6.1f}s {row.get('reason', '')[:120]}", flush=True
        )
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "refused", "wrong", "crash")}
    print(source, counts, flush=True)
    return {"models": len(rows), "counts": counts, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["torchvision", "timm", "all"], default="all")
    parser.add_argument("--only", nargs="*", default=None, help="model names (default: all); nothing is written")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = ["torchvision", "timm"] if args.source == "all" else [args.source]
    document: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    document.update(
        {
            "archcompress": archcompress.__version__,
            "torch": torch.__version__,
            "torchvision": __import__("torchvision").__version__,
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
        }
    )
    for source in sources:
        if source == "timm":
            import timm

            document["timm_version"] = timm.__version__
            names = timm_models()
            document["timm_families"] = list(TIMM_FAMILIES)
            document["timm_max_params"] = TIMM_MAX_PARAMS
        else:
            names = [n for n in torchvision_classifiers() if n not in SKIPPED]
        if args.only:
            names = [n for n in names if n in args.only]
        result = sweep(names, source)
        if not args.only:
            document[source] = result
    if not args.only:
        RESULTS.write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
