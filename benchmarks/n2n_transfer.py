"""Do N2N policies trained on a small teacher speed up the search on a larger one of the same family?

Two pairs on ``mnist5k`` (8-epoch teachers): VGG-11 to VGG-19 (both at width 0.25) and ResNet-20 to ResNet-56.
For each pair, N2N runs once on the source teacher (``--source-budget`` evaluations); its saved policies then
start N2N on the target teacher (``--policy``), beside N2N from scratch, for each seed, with the same budget,
target, candidate evaluator and final distillation (real ``archcompress.compress`` runs, the fast preset). Each
transfer variant changes one thing:

- ``transfer``: the saved policies as they are;
- ``soft``: softened while they adapt (temperature ``--soft-temperature``, lowered to 1 over 10 updates);
- ``reset``: the stage-2 policy's output layer re-initialised (its width choices do not carry over);
- ``relative``: source and target policies read unit features relative to their teacher (a second source run);
- ``count``: the removal policy's keep logit shifted so that it keeps as many units as on the source teacher
  (by default it keeps the same share, so a teacher with more layers gets more of them kept).

``*_evals_to_best`` is the number of evaluations a run needed to first reach the from-scratch run's final best
reward (null: never); the reward is the paper's, of the best student that meets the target, as ``compress``
ranks them. Every run keeps its own store (a shared one would hand later runs the promotions of earlier ones).
With ``--embedding``, the embedding method also runs on the target from scratch and from the codec its run on
the source trained (its store as prior knowledge). Writes ``benchmarks/results/n2n_transfer.json``; finished runs
are read back from their run directories, so an interrupted benchmark continues where it stopped.

    .venv/bin/python benchmarks/n2n_transfer.py [--pairs vgg resnet] [--seeds 0 1 2] [--jobs 2] [--embedding]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.distill import TrainConfig
from archcompress.evaluate import SpaceOptions
from archcompress.rundir import CODEC_DIR, POLICIES_DIR, REPORT_FILE
from archcompress.runtime import atomic_write_text, cache_home
from archcompress.search.embedding.search import EmbeddingOptions
from archcompress.search.n2n.search import N2NOptions

RESULTS = Path(__file__).parent / "results" / "n2n_transfer.json"
CURVE_FILE = "bench-curve.json"  # written by this benchmark into each run directory
DATASET = "mnist5k"
TEACHER_EPOCHS = 8
FINAL_EPOCHS = 15  # as the mnist5k quality tables
SPACE = SpaceOptions(ratios=(0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0), min_channels=2)  # as those tables
PAIRS = {"vgg": (("vgg11", 0.25), ("vgg19", 0.25)), "resnet": (("resnet20", 1.0), ("resnet56", 1.0))}
TRANSFER_VARIANTS = ("transfer", "soft", "reset", "relative", "count")
VARIANTS = ("scratch", *TRANSFER_VARIANTS)


@dataclass(frozen=True)
class RunSpec:
    """One compress run of the benchmark."""

    pair: str
    role: str  # source | target
    variant: str  # scratch | transfer | soft | reset | relative | count | embedding | embedding-prior
    seed: int
    budget: int
    target: float
    soft_temperature: float
    work: str

    @property
    def model(self) -> tuple[str, float]:
        return PAIRS[self.pair][0 if self.role == "source" else 1]

    @property
    def out(self) -> Path:
        return Path(self.work) / self.pair / f"{self.role}-{self.variant}-seed{self.seed}"


def teacher_path(work: Path, model: str, width: float) -> Path:
    return work / f"teacher-{model}-w{width:g}.pt"


def source_of(spec: RunSpec) -> RunSpec:
    """The source run whose policies (or codec) a target run starts from."""
    variant = {"relative": "relative", "embedding-prior": "embedding"}.get(spec.variant, "scratch")
    return RunSpec(spec.pair, "source", variant, 0, spec.budget * 2, spec.target, spec.soft_temperature, spec.work)


def options_for(spec: RunSpec) -> dict[str, Any]:
    """The method and its options of ``spec``'s run."""
    if spec.variant.startswith("embedding"):
        codec = str(source_of(spec).out / CODEC_DIR) if spec.variant == "embedding-prior" else None
        return {"method": "embedding", "embedding": EmbeddingOptions(codec=codec)}
    features = "relative" if spec.variant == "relative" else "absolute"
    if spec.role == "source" or spec.variant == "scratch":
        return {"method": "n2n", "n2n": N2NOptions(features=features)}
    policy = str(source_of(spec).out / POLICIES_DIR)
    changes: dict[str, Any] = {"soft": {"transfer_temperature": spec.soft_temperature, "transfer_anneal": 10},
                               "reset": {"transfer_reset": "shrink-head"},
                               "count": {"transfer_keep": "count"}}.get(spec.variant, {})  # fmt: skip
    return {"method": "n2n", "n2n": N2NOptions(policy=policy, features=features, **changes)}


def run(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume, or read back) one compress run; its row with the best-reward curve."""
    torch.set_num_threads(1)
    out = spec.out
    curve_file = out / CURVE_FILE
    if (out / REPORT_FILE).is_file() and curve_file.is_file():
        return json.loads(curve_file.read_text())
    model, width = spec.model
    best: dict[int, float] = {}
    accuracies: dict[int, float | None] = {}

    def progress(status: Any) -> None:
        if status.best is not None:
            best[status.done] = status.best_reward
        if status.last is not None and status.done not in accuracies:
            accuracies[status.done] = status.last.val_accuracy

    result = archcompress.compress(
        teacher_path(Path(spec.work), model, width), out, resume=out.is_dir(), budget=spec.budget,
        target=spec.target, seed=spec.seed, final_epochs=FINAL_EPOCHS, space=SPACE, threads=1, on_progress=progress,
        **options_for(spec),
    )  # fmt: skip
    report = result.report
    evaluations = report["search"]["evaluations"]
    curve, level = [], -1.0
    for done in range(1, evaluations + 1):
        level = best.get(done, level)
        curve.append(level)
    first = [a for done, a in sorted(accuracies.items()) if a is not None][:10]
    row = {
        "pair": spec.pair, "role": spec.role, "variant": spec.variant, "seed": spec.seed,
        "teacher": f"{model} width {width:g}", "teacher_params": report["teacher"]["params"],
        "best_reward": curve[-1] if curve else None, "best_reward_curve": curve,
        "mean_val_accuracy_first_10": statistics.fmean(first) if first else None,
        "evaluations": evaluations, "proposals": report["search"]["proposals"],
        "test_accuracy": report["student"]["test_accuracy"], "params": report["student"]["params"],
        "compression": report["compression"]["params"], "seconds": report["seconds"],
    }  # fmt: skip
    atomic_write_text(curve_file, json.dumps(row, indent=1) + "\n")
    return row


def evaluations_to_reach(curve: list[float], level: float) -> int | None:
    """1-based index of the first evaluation whose best-so-far reward reaches ``level`` (None: never)."""
    return next((i + 1 for i, value in enumerate(curve) if value >= level - 1e-12), None)


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's ``pairs`` rows: each transfer variant beside the from-scratch run of its pair and seed."""
    by_key = {(r["pair"], r["variant"], r["seed"]): r for r in rows if r["role"] == "target"}
    pairs = []
    for (pair, variant, seed), row in sorted(by_key.items()):
        baseline = "embedding" if variant == "embedding-prior" else "scratch"
        scratch = by_key.get((pair, baseline, seed))
        if variant in ("scratch", "embedding") or scratch is None:
            continue
        level = scratch["best_reward"]
        (source, _), (target, _) = PAIRS[pair]
        pairs.append({
            "source": source, "target": target, "dataset": DATASET, "seed": seed, "variant": variant,
            "scratch_best": level, "transfer_best": row["best_reward"],
            "scratch_evals_to_best": evaluations_to_reach(scratch["best_reward_curve"], level),
            "transfer_evals_to_best": evaluations_to_reach(row["best_reward_curve"], level),
            "scratch_test_accuracy": scratch["test_accuracy"], "transfer_test_accuracy": row["test_accuracy"],
            "scratch_mean_val_accuracy_first_10": scratch["mean_val_accuracy_first_10"],
            "transfer_mean_val_accuracy_first_10": row["mean_val_accuracy_first_10"],
            "budget": row["evaluations"],
        })  # fmt: skip
    return pairs


def verdict(pairs: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """The issue's bar for one variant: at most half the evaluations and a student at least as good, every seed."""
    rows = [p for p in pairs if p["variant"] == variant]
    fast = [p["transfer_evals_to_best"] is not None and p["transfer_evals_to_best"] <= p["budget"] / 2 for p in rows]
    good = [p["transfer_test_accuracy"] >= p["scratch_test_accuracy"] for p in rows]
    return {
        "variant": variant,
        "runs": len(rows),
        "half_the_evaluations": sum(fast),
        "student_at_least_as_good": sum(good),
        "both": sum(f and g for f, g in zip(fast, good, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--budget", type=int, default=50, help="evaluations per target run (source: twice that)")
    parser.add_argument("--target", type=float, default=100.0, help="compression target of every run")
    parser.add_argument("--soft-temperature", type=float, default=2.0, help="the soft variant's first temperature")
    parser.add_argument("--embedding", action="store_true", help="also the embedding method, from scratch and prior")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs at once (1 thread each)")
    parser.add_argument("--work", type=Path, default=None, help="teachers and runs [~/.cache/archcompress/bench]")
    args = parser.parse_args()
    work = (args.work or cache_home() / "bench") / "transfer"
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    for pair in args.pairs:
        for model, width in PAIRS[pair]:
            path = teacher_path(work, model, width)
            if not path.is_file():
                print(f"training the teacher {model} (width {width:g}) on {DATASET}, {TEACHER_EPOCHS} epochs ...")
                train_teacher(model, DATASET, path, model_kwargs={"width": width},
                              train=TrainConfig(epochs=TEACHER_EPOCHS, seed=0))  # fmt: skip

    variants = list(args.variants) + (["embedding", "embedding-prior"] if args.embedding else [])
    targets = [RunSpec(pair, "target", variant, seed, args.budget, args.target, args.soft_temperature, str(work))
               for pair in args.pairs for seed in args.seeds for variant in variants]  # fmt: skip
    sources = list({source_of(t): None for t in targets if t.variant not in ("scratch", "embedding")})
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        print(f"{len(sources)} source runs, then {len(targets)} target runs, {args.jobs} at a time ...", flush=True)
        rows = [*pool.map(run, sources), *pool.map(run, targets)]
    pairs = compare(rows)
    verdicts = [verdict(pairs, v) for v in dict.fromkeys(p["variant"] for p in pairs)]
    report = {
        "question": "do N2N policies trained on a small teacher speed up the search on a larger one?",
        "archcompress": archcompress.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "dataset": DATASET, "teacher_epochs": TEACHER_EPOCHS,
        "setting": {"budget": args.budget, "source_budget": 2 * args.budget, "target": args.target,
                    "final_epochs": FINAL_EPOCHS, "ratios": list(SPACE.ratios), "min_channels": SPACE.min_channels,
                    "soft_temperature": args.soft_temperature, "soft_anneal": 10,
                    "preset": "fast", "threads_per_run": 1},
        "pairs": pairs, "verdicts": verdicts, "runs": rows,
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(report, indent=1) + "\n")
    print(table(pairs, verdicts))
    print(f"written to {RESULTS}")


def table(pairs: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> str:
    """A markdown table of every comparison and one of the verdicts, for docs/benchmarks.md."""
    lines = ["| pair | variant | seed | best (scratch / transfer) | evaluations to scratch best (scratch / transfer) "
             "| test accuracy % (scratch / transfer) | mean val acc % first 10 (scratch / transfer) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in pairs:
        reach = f"{p['scratch_evals_to_best']} / {p['transfer_evals_to_best'] or 'never'}"
        first = f"{100 * (p['scratch_mean_val_accuracy_first_10'] or 0):.1f} / " \
                f"{100 * (p['transfer_mean_val_accuracy_first_10'] or 0):.1f}"  # fmt: skip
        lines.append(f"| {p['source']} to {p['target']} | {p['variant']} | {p['seed']} | {p['scratch_best']:.4f} / "
                     f"{p['transfer_best']:.4f} | {reach} | {100 * p['scratch_test_accuracy']:.2f} / "
                     f"{100 * p['transfer_test_accuracy']:.2f} | {first} |")  # fmt: skip
    lines += ["", "| pair | variant | test accuracy %, mean (lowest-highest) of the seeds: scratch / transfer "
              "| best reward, mean: scratch / transfer |", "|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for p in pairs:
        groups.setdefault((p["source"], p["target"], p["variant"]), []).append(p)
    for (source, target, variant), group in groups.items():
        lines.append(f"| {source} to {target} | {variant} | {_spread(group, 'scratch_test_accuracy')} / "
                     f"{_spread(group, 'transfer_test_accuracy')} | {_mean(group, 'scratch_best'):.4f} / "
                     f"{_mean(group, 'transfer_best'):.4f} |")  # fmt: skip
    lines += ["", "| variant | runs | within half the evaluations | student at least as good | both |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {v['variant']} | {v['runs']} | {v['half_the_evaluations']} | {v['student_at_least_as_good']} | "
              f"{v['both']} |" for v in verdicts]  # fmt: skip
    return "\n".join(lines)


def _mean(group: list[dict[str, Any]], key: str) -> float:
    return sum(p[key] for p in group) / len(group)


def _spread(group: list[dict[str, Any]], key: str) -> str:
    """``mean (lowest-highest)`` of an accuracy over the seeds of a group, in percent."""
    values = [100 * p[key] for p in group]
    return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
