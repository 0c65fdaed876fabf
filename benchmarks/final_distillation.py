"""Which distillation loss should the final student get: L2 on the teacher's logits, or Hinton's KD?

Takes the students that searches chose in finished quality runs (``quality.py`` run directories under
``~/.cache/archcompress/bench/NAME``), and distils each again from its inherited weights, once per variant,
exactly as ``compress`` does its final distillation (same code, same config, same seed): only the loss (or,
with ``kd-2x``, the number of final epochs) differs. The rerun with the run's own settings repeats the recorded
test accuracy (up to CPU non-determinism), which is checked and reported. Differences are paired per student.

    .venv/bin/python benchmarks/final_distillation.py --runs cnn1d-mnist1d-l2 lenet5-digits-l2
    .venv/bin/python benchmarks/final_distillation.py --runs lenet5-digits cnn1d-mnist1d --variants kd kd-2x \
        --out benchmarks/results/final_epochs.json

Writes ``benchmarks/results/final_distillation.json`` (or ``--out``) and prints a table per teacher.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

import archcompress
from archcompress.config import CompressConfig
from archcompress.evaluate import EvalContext, worker_state
from archcompress.evaluate.worker import WorkerState
from archcompress.methods import ChosenStudent
from archcompress.pipeline.final import final_budget, final_distillation
from archcompress.runtime import atomic_write_text, cache_home, resolve_device, seed_everything
from archcompress.space.candidate import Candidate

RESULTS = Path(__file__).resolve().parent / "results"
QUESTION = "which distillation loss should the final student get: L2 on logits or Hinton's KD?"
QUESTION_EPOCHS = "how much does the final student gain from twice the final distillation's epochs?"
# each variant: the run's --final-loss, the KD settings of its budget (those the final distillation uses), and
# a factor on the run's --final-epochs
VARIANTS: dict[str, dict[str, Any]] = {
    "l2": {"final_loss": "l2", "budget": {}},
    "kd": {"final_loss": "kd", "budget": {"temperature": 4.0, "alpha": 0.9}},  # Hinton: T=4, 10% on the labels
    "kd-2x": {"final_loss": "kd", "budget": {"temperature": 4.0, "alpha": 0.9}, "epochs_factor": 2},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["cnn1d-mnist1d-l2", "lenet5-digits-l2", "resnet20-mnist5k-l2",
                                                      "vgg11-mnist5k-high-l2"],
                        help="quality benchmark names (folders under ~/.cache/archcompress/bench)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", default=["n2n", "embedding"])
    parser.add_argument("--variants", nargs="+", default=["l2", "kd"], choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "final_distillation.json")
    return parser.parse_args()


def chosen_students(bench: Path, methods: list[str]) -> list[Path]:
    """The finished search runs of ``methods`` in one quality benchmark's folder, by method then seed."""
    runs = []
    for method in methods:
        for run in sorted(bench.glob(f"{method}-*-seed*")):
            report = run / "report.json"
            if report.is_file() and json.loads(report.read_text()).get("complete"):
                runs.append(run)
    return runs


_STATES: dict[str, WorkerState] = {}


def shared_state(config: CompressConfig, report: dict[str, Any]) -> WorkerState:
    """Teacher, data and space of a run, set up once for every run of the same teacher, data and space (the
    final distillation takes its loss from ``config``, not from the state)."""
    key = json.dumps([config.teacher, report["dataset"], asdict(config.data), asdict(config.space)], default=str)
    if key not in _STATES:
        context = EvalContext(config.teacher, report["teacher"]["sha256"], report["dataset"], config.data,
                              config.candidate, device=config.device, space=config.space)  # fmt: skip
        _STATES[key] = worker_state(context)
    return _STATES[key]


def redistil(run: Path, variant: str, device: torch.device) -> dict[str, Any]:
    """The final distillation of ``run``'s chosen student again, with the loss of ``variant``."""
    report = json.loads((run / "report.json").read_text())
    recorded = CompressConfig.from_yaml(run / "config.yaml", complete=True)
    chosen_loss = VARIANTS[variant]
    config = replace(recorded, final_loss=chosen_loss["final_loss"],
                     final_epochs=recorded.final_epochs * chosen_loss.get("epochs_factor", 1),
                     candidate=replace(recorded.candidate, **chosen_loss["budget"]))  # fmt: skip
    state = shared_state(config, report)
    candidate = Candidate.from_dict(report["student"]["candidate"])
    seed_everything(config.seed)  # as build_chosen does, so the inherited student is the run's own
    built = state.space.build(candidate, inherit=config.candidate.init == "inherit")
    chosen = ChosenStudent(built.module, built.params, built.macs, {}, "rerun")
    started = time.perf_counter()
    final = final_distillation(config, state, chosen, device)
    return {
        "run": run.name,
        "candidate_hash": report["student"]["candidate_hash"],
        "method": report["method"],
        "seed": config.seed,
        "variant": variant,
        # repeats the recorded run
        "own_loss": final_budget(recorded).loss == final_budget(config).loss
        and config.final_epochs == recorded.final_epochs,
        "params": built.params,
        "final_epochs": config.final_epochs,
        "test_accuracy": final["test_accuracy"],
        "val_accuracy": final["val_accuracy"],
        "recorded_test_accuracy": report["student"]["test_accuracy"],
        "seconds": time.perf_counter() - started,
    }


def measured(row: dict[str, Any] | None, candidate_hash: str) -> bool:
    """Whether a saved row measured the student a run directory now holds (a run made again since may have
    chosen another student: that one is measured again, and its row replaced)."""
    return row is not None and row.get("candidate_hash") == candidate_hash


def paired(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per variant: mean and spread over students, and the mean paired difference to the first variant."""
    by_run: dict[str, dict[str, float]] = {}
    for row in rows:
        by_run.setdefault(row["run"], {})[row["variant"]] = row["test_accuracy"]
    complete = {run: accs for run, accs in by_run.items() if all(v in accs for v in variants)}
    summary: dict[str, Any] = {"students": len(complete)}
    base = variants[0]
    for variant in variants:
        values = [100 * accs[variant] for accs in complete.values()]
        diffs = [100 * (accs[variant] - accs[base]) for accs in complete.values()]
        summary[variant] = {
            "test_accuracy_mean": statistics.fmean(values) if values else None,
            "test_accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            f"minus_{base}_mean": statistics.fmean(diffs) if diffs else None,
            f"minus_{base}_std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            f"better_than_{base}": sum(d > 0 for d in diffs),
            f"worse_than_{base}": sum(d < 0 for d in diffs),
        }
    return summary


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device("cpu")
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {(r["bench"], r["run"], r["variant"]): r for r in previous.get("rows", [])}
    for name in args.runs:
        bench = cache_home() / "bench" / name
        runs = chosen_students(bench, args.methods)
        if not runs:
            raise SystemExit(f"error: no finished {'/'.join(args.methods)} runs under {bench}: run quality.py first")
        for run in runs:
            chosen = json.loads((run / "report.json").read_text())["student"]["candidate_hash"]
            for variant in args.variants:
                key = (name, run.name, variant)
                if measured(done.get(key), chosen):
                    continue
                done[key] = {"bench": name, **redistil(run, variant, device)}
                row = done[key]
                print(
                    f"{name} {run.name} {variant}: {100 * row['test_accuracy']:.1f}% "
                    f"(recorded {100 * row['recorded_test_accuracy']:.1f}%), {row['seconds']:.0f} s",
                    flush=True,
                )
                write(args, list(done.values()))  # after every run: an interrupted benchmark resumes
    rows = list(done.values())
    write(args, rows)
    for name in args.runs:
        print(f"\n{name}: {json.dumps(paired([r for r in rows if r['bench'] == name], args.variants), indent=1)}")


def write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    benches = sorted({r["bench"] for r in rows})
    result = {
        "question": QUESTION if "kd-2x" not in args.variants else QUESTION_EPOCHS,
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "variants": {name: VARIANTS[name] for name in args.variants},
        "summary": {b: paired([r for r in rows if r["bench"] == b], args.variants) for b in benches},
        "all_students": paired(rows_by_student(rows), args.variants),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


def rows_by_student(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows keyed by bench and run together, so students of different teachers pair only with themselves."""
    return [{**r, "run": f"{r['bench']}/{r['run']}"} for r in rows]


if __name__ == "__main__":
    main()
