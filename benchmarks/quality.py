"""Quality at a fixed budget: every method on one teacher, the same evaluations and final distillation.

Each (method, target, seed) is one real ``archcompress.compress`` run (its run directory is kept under
``--work``, so an interrupted benchmark resumes where it stopped). Reported per run: the student's test
accuracy (the test split is touched once per run), parameters, compression, MACs, wall time, target met,
and the Pareto hypervolume of the method's evaluated candidates. Results go to
``benchmarks/results/quality-NAME.json`` and a table to ``benchmarks/results/quality-NAME.md``, which is
also pasted into ``docs/benchmarks.md`` between its ``quality:NAME`` markers.

Methods: ``n2n`` (log-scale compression reward), ``n2n-finalists`` (the same with ``--finalists 3
--finalist-epochs 10``), ``n2n-paper`` (the paper's ``C (2 - C)`` reward),
``random``, ``uniform`` (one width, and depth cuts), ``embedding`` and ``prune`` (L1 channel pruning to the
target, no search).

    .venv/bin/python benchmarks/quality.py --name vgg11-mnist5k --model vgg11 --dataset mnist5k \\
        --methods n2n n2n-paper prune --targets 100 200 500 --seeds 0 1 2 --budget 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.api import train_teacher
from archcompress.distill import TrainConfig
from archcompress.evaluate import Budget, ResultStore, SpaceOptions
from archcompress.evaluate.budget import parse_rungs
from archcompress.evaluate.rungs import DEFAULT_PROMOTE
from archcompress.rundir import LOG_FILE, STORE_FILE
from archcompress.runtime import atomic_write_text, cache_home
from archcompress.search.n2n.search import N2NOptions

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs" / "benchmarks.md"
METHODS = ("n2n", "n2n-paper", "n2n-finalists", "embedding", "random", "uniform", "prune")
FINALISTS, FINALIST_EPOCHS = 3, 10  # n2n-finalists: n2n with --finalists 3 --finalist-epochs 10
DEFAULT_REMOVABLE = ("block", "body")  # every table before --removable existed: --keep-pooling


@dataclass(frozen=True)
class Setting:
    """What every run of one benchmark shares (a changed setting starts the benchmark afresh)."""

    model: str
    model_kwargs: dict[str, Any]
    dataset: str
    teacher_epochs: int
    budget: int
    candidate_epochs: int
    subset: int | None
    batch_size: int
    lr: float
    stage1_share: float
    final_epochs: int
    ratios: tuple[float, ...]
    min_channels: int
    removable: tuple[str, ...] = DEFAULT_REMOVABLE
    rungs: tuple[int, ...] = ()  # multi-fidelity candidate evaluation (candidate_epochs then unused)
    promote: float = DEFAULT_PROMOTE
    stage2_bases: int = 1  # n2n: stage-1 architectures stage 2 shrinks in turn
    fit_to_limit: bool = False  # n2n: stage-2 proposals over the parameter limit are stepped down to it
    final_loss: str = "l2"  # the chosen student's distillation loss (every table before --final-loss: l2)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="results name, e.g. vgg11-mnist5k")
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--model-arg", action="append", default=[], help="KEY=VALUE, e.g. width=0.5")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["n2n", "prune"], choices=METHODS)
    parser.add_argument("--targets", nargs="+", type=float, default=[100.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=100, help="candidate evaluations per search")
    parser.add_argument("--epochs", type=int, default=1, help="distillation epochs per candidate")
    parser.add_argument("--rungs", default="none", help="multi-fidelity rungs in epochs, e.g. 1,3,9 (none: --epochs)")
    parser.add_argument("--promote", type=float, default=DEFAULT_PROMOTE, help="with --rungs: share promoted")
    parser.add_argument("--subset", type=int, default=0, help="training images per candidate (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (candidates and final)")
    parser.add_argument("--stage1-share", type=float, default=0.3, help="n2n: share of the budget for removal")
    parser.add_argument("--stage2-bases", type=int, default=1, help="n2n: stage-1 architectures stage 2 shrinks")
    parser.add_argument("--fit-to-limit", action="store_true", help="n2n: stage 2 fits proposals to the limit")
    parser.add_argument("--final-epochs", type=int, default=15)
    parser.add_argument("--final-loss", default="l2", choices=("l2", "kd"), help="the chosen student's loss")
    parser.add_argument("--ratios", default="0.02,0.04,0.06,0.1,0.15,0.25,0.5,1")
    parser.add_argument("--min-channels", type=int, default=2)
    parser.add_argument("--removable", default=",".join(DEFAULT_REMOVABLE), help="kinds of unit a search may remove")
    parser.add_argument("--work", type=Path, default=None, help="run directories [~/.cache/archcompress/bench]")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    kwargs = {k: float(v) for k, v in (item.split("=", 1) for item in args.model_arg)}
    setting = Setting(
        args.model, kwargs, args.dataset, args.teacher_epochs, args.budget, args.epochs, args.subset or None,
        args.batch_size, args.lr, args.stage1_share, args.final_epochs, tuple(float(r) for r in args.ratios.split(",")),
        args.min_channels, tuple(args.removable.split(",")), parse_rungs(args.rungs), args.promote,
        args.stage2_bases, args.fit_to_limit, args.final_loss,
    )  # fmt: skip
    work = (args.work or cache_home() / "bench") / args.name
    work.mkdir(parents=True, exist_ok=True)
    recorded = work / "setting.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != _plain(setting):
        raise SystemExit(f"{work} holds runs made with other settings: delete it or choose another --name")
    atomic_write_text(recorded, json.dumps(_plain(setting), indent=1) + "\n")
    results_path = RESULTS / f"quality-{args.name}.json"
    previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
    rows: list[dict[str, Any]] = previous.get("runs", []) if previous.get("setting") == _plain(setting) else []

    teacher = work / "teacher.pt"
    if not teacher.is_file():
        print(f"training the teacher: {args.model} {kwargs or ''} on {args.dataset}, {args.teacher_epochs} epochs")
        train_teacher(args.model, args.dataset, teacher, model_kwargs=kwargs,
                      train=TrainConfig(epochs=args.teacher_epochs, seed=0))  # fmt: skip
    meta = archcompress.load_teacher(teacher).meta

    # every requested run is read from its run directory (finished), resumed, or run; rows of the results file that
    # this invocation does not ask for are kept, so benchmarks split over several commands add up
    asked = {(m, t, s) for t in args.targets for s in args.seeds for m in args.methods}
    rows = [r for r in rows if (r["method"], r["target"], r["seed"]) not in asked]
    for target in args.targets:
        for seed in args.seeds:
            for method in args.methods:
                print(f"{method} at {target:g}x, seed {seed} ...", flush=True)
                rows.append(run_one(setting, teacher, work, method, target, seed))
                row = rows[-1]
                print(f"  test {row['test_accuracy']:.2%} at {row['compression']:.0f}x, {row['seconds']:.0f} s")
                write(results_path, setting, meta, rows)
    write(results_path, setting, meta, rows)


def run_one(setting: Setting, teacher: Path, work: Path, method: str, target: float, seed: int) -> dict[str, Any]:
    """One compression run (resumed if its directory exists but has no report yet)."""
    out = work / f"{method}-{target:g}x-seed{seed}"
    resume = out.is_dir() and not (out / "report.json").is_file()
    options = N2NOptions(reward="paper" if method == "n2n-paper" else "log", stage1_share=setting.stage1_share,
                         stage2_bases=setting.stage2_bases, fit_to_limit=setting.fit_to_limit)  # fmt: skip
    finalists = {"finalists": FINALISTS, "finalist_epochs": FINALIST_EPOCHS} if method == "n2n-finalists" else {}
    result = archcompress.compress(
        teacher, out, method=method.split("-")[0], resume=resume, budget=setting.budget, target=target,
        seed=seed, final_epochs=setting.final_epochs, final_loss=setting.final_loss, settings={"uniform.depth": True},
        n2n=options, **finalists,
        candidate=Budget(epochs=setting.candidate_epochs, subset=setting.subset, batch_size=setting.batch_size,
                         lr=setting.lr, rungs=setting.rungs), promote=setting.promote,
        space=SpaceOptions(ratios=setting.ratios, min_channels=setting.min_channels, removable=setting.removable),
    ) if not (out / "report.json").is_file() else None  # fmt: skip
    report = result.report if result else json.loads((out / "report.json").read_text())
    student, teacher_info = report["student"], report["teacher"]
    # a resumed run's report sums the time of its invocations; reports made before archcompress did that miss
    # what came before the resume, which the run's log and store still tell
    invocations = report.get("invocations")
    resumed, resumed_seconds = (0, 0.0) if invocations else work_before_resume(out)
    return {
        "method": method,
        "target": target,
        "seed": seed,
        "test_accuracy": student["test_accuracy"],
        "val_accuracy": student["val_accuracy"],
        "teacher_test_accuracy": teacher_info["test_accuracy"],
        "params": student["params"],
        "macs": student["macs"],
        "compression": report["compression"]["params"],
        "target_met": report["target"]["met"],
        "evaluations": report["search"]["evaluations"],
        "hypervolume": hypervolume(out / STORE_FILE, teacher_info["params"]),
        "search_seconds": report["search"]["seconds"],
        "seconds": report["seconds"] + resumed_seconds,
        "invocations": invocations or (2 if resumed else 1),
        "run_dir": str(out),
    }


def work_before_resume(out: Path) -> tuple[int, float]:
    """Evaluations stored before the last resume of a run made before reports counted every invocation's time,
    and their training time."""
    log = out / LOG_FILE
    resumes = [line for line in log.read_text().splitlines() if " INFO resuming " in line] if log.is_file() else []
    if not resumes:
        return 0, 0.0
    resumed_at = datetime.strptime(resumes[-1][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # logging's local time
    earlier = [r for r in ResultStore(out / STORE_FILE).query() if r.created < resumed_at]
    return len(earlier), sum(r.train_seconds or 0.0 for r in earlier)


def hypervolume(store_path: Path, teacher_params: int) -> float | None:
    """Area dominated by the evaluated candidates in (log10 compression, val accuracy), from (0, 0).

    ``None`` for a method that evaluates no candidates (``prune``).
    """
    points = sorted(
        ((math.log10(teacher_params / r.params), r.val_accuracy) for r in ResultStore(store_path).query()
         if r.status == "ok" and r.params and r.val_accuracy is not None),
        reverse=True,
    )  # fmt: skip
    if not points:
        return None
    area, best_accuracy = 0.0, 0.0
    for index, (x, accuracy) in enumerate(points):  # sweep from the most compressed candidate down
        best_accuracy = max(best_accuracy, accuracy)
        next_x = points[index + 1][0] if index + 1 < len(points) else 0.0
        area += (x - next_x) * best_accuracy
    return area


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread per (target, method), in the order the runs were made."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["target"], row["method"]), []).append(row)
    summary = []
    for (target, method), runs in sorted(groups.items(), key=lambda item: item[0][0]):
        accuracy = [r["test_accuracy"] for r in runs]
        # in points, rounded: a loss of exactly 10 of 1,000 test images is 1.0 point, not 1.0000000000000009
        drops = [round(100 * (r["teacher_test_accuracy"] - r["test_accuracy"]), 9) for r in runs]
        volumes = [r["hypervolume"] for r in runs if r["hypervolume"] is not None]
        summary.append({
            "target": target,
            "method": method,
            "seeds": len(runs),
            "test_accuracy_mean": statistics.fmean(accuracy),
            "test_accuracy_std": statistics.stdev(accuracy) if len(runs) > 1 else 0.0,
            "drop_points_mean": statistics.fmean(drops),
            "compression_mean": statistics.fmean(r["compression"] for r in runs),
            "params_mean": statistics.fmean(r["params"] for r in runs),
            "macs_mean": statistics.fmean(r["macs"] for r in runs),
            "target_met": sum(r["target_met"] for r in runs),
            "within_1_point": sum(d <= 1.0 and r["target_met"] for d, r in zip(drops, runs, strict=True)),
            "hypervolume_mean": statistics.fmean(volumes) if volumes else None,
            "minutes_mean": statistics.fmean(r["seconds"] for r in runs) / 60,
            "resumed_runs": sum(r.get("invocations", 1) > 1 for r in runs),
        })  # fmt: skip
    return summary


def table(setting: Setting, meta: Any, summary: list[dict[str, Any]]) -> str:
    """The markdown table of the summary, with the setting it was measured under."""
    counts = sorted({s["seeds"] for s in summary}) or [0]
    seeds = f"{counts[-1]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (each row's count in 'met target')"
    lines = [
        f"Teacher {' '.join([setting.model, *(f'{k}={v:g}' for k, v in setting.model_kwargs.items())])} on "
        f"`{setting.dataset}`: {meta.params:,} params, "
        f"test accuracy {meta.test_accuracy:.2%}. Budget: {setting.budget} candidate evaluations "
        + (
            f"(rungs after {','.join(map(str, setting.rungs))} epochs, the best {setting.promote:.0%} of each rung "
            "that meet the target promoted, of L2-logit distillation from inherited weights on "
            if setting.rungs
            else f"({setting.candidate_epochs} epoch(s) of L2-logit distillation from inherited weights on "
        )
        + f"{setting.subset or 'all'} training images each, Adam {setting.lr:g}, batch {setting.batch_size}; N2N "
        f"spends {setting.stage1_share:.0%} of it on stage 1), then {setting.final_epochs} epochs of "
        + ("the same distillation" if setting.final_loss == "l2" else "Hinton KD (T=4, 10% hard labels)")
        + " on the whole training split for the chosen student. "
        f"Ratios {list(setting.ratios)}, at least {setting.min_channels} channels per layer, "
        + (
            "max-pooling layers kept (`--keep-pooling`). "
            if setting.removable == DEFAULT_REMOVABLE
            else f"removable units: `--removable {','.join(setting.removable)}`. "
        )
        + f"Mean ± standard deviation over {seeds} seed(s); 'within 1 pt': runs that met the target with at most "
        "1.0 point of test accuracy lost; hypervolume: area dominated by the evaluated candidates in "
        "(log10 compression, val accuracy)."
        + (
            " Minutes marked * include resumed runs, timed over all their invocations (for runs made before "
            "archcompress recorded that: the time after the resume plus the training time of the evaluations made "
            "before it)."
            if any(s["resumed_runs"] for s in summary)
            else ""
        ),
        "",
        "| target | method | test accuracy | drop (points) | compression | params | MACs | met target | "
        "within 1 pt | hypervolume | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        volume = f"{s['hypervolume_mean']:.3f}" if s["hypervolume_mean"] is not None else "-"
        lines.append(
            f"| {s['target']:g}x | {s['method']} | {s['test_accuracy_mean']:.2%} ± {s['test_accuracy_std']:.2%} | "
            f"{s['drop_points_mean']:.2f} | {s['compression_mean']:.0f}x | {s['params_mean']:,.0f} | "
            f"{s['macs_mean']:,.0f} | {s['target_met']}/{s['seeds']} | {s['within_1_point']}/{s['seeds']} | "
            f"{volume} | {s['minutes_mean']:.1f}{'*' if s['resumed_runs'] else ''} |"
        )
    return "\n".join(lines) + "\n"


def write(path: Path, setting: Setting, meta: Any, rows: list[dict[str, Any]]) -> None:
    """Results JSON, the markdown table beside it, and the same table in docs/benchmarks.md."""
    summary = summarise(rows)
    report = {
        "question": "which method finds the best student at a fixed evaluation budget?",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "setting": _plain(setting),
        "teacher": {"params": meta.params, "test_accuracy": meta.test_accuracy, "val_accuracy": meta.val_accuracy},
        "runs": rows,
        "summary": summary,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    text = table(setting, meta, summary)
    atomic_write_text(path.with_suffix(".md"), text)
    name = path.stem.removeprefix("quality-")
    begin, end = f"<!-- BEGIN quality:{name} -->", f"<!-- END quality:{name} -->"
    docs = DOCS.read_text()
    if begin in docs and end in docs:
        head, rest = docs.split(begin, 1)
        atomic_write_text(DOCS, head + begin + "\n" + text + end + rest.split(end, 1)[1])


def _plain(setting: Setting) -> dict[str, Any]:
    plain: dict[str, Any] = json.loads(json.dumps(asdict(setting)))
    if setting.removable == DEFAULT_REMOVABLE:
        del plain["removable"]  # so the settings of tables made before --removable existed still match
    if not setting.rungs:  # likewise for tables made before rungs
        del plain["rungs"], plain["promote"]
    if setting.stage2_bases == 1:
        del plain["stage2_bases"]
    if setting.final_loss == "l2":
        del plain["final_loss"]
    if not setting.fit_to_limit:
        del plain["fit_to_limit"]
    return plain


if __name__ == "__main__":
    main()
