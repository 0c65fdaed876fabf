"""How well do cheap proxies rank small students? Kendall tau between each proxy and the final test accuracy.

Samples ``--candidates`` random students of a teacher's space between ``--min-ratio`` and ``--max-ratio`` times
smaller, and trains each one to the final budget (``--final-epochs`` of the project's distillation, inherited
weights, one cosine schedule over the whole run), as the final distillation of ``compress`` does. Proxies, each
with its cost in training epochs per candidate:

- ``snapshot_acc@k``: val accuracy after epoch k *of that long run* (what a multi-fidelity scheme that
  continues training would see at a rung of k epochs);
- ``snapshot_l2@k``: val L2 distance to the teacher's logits at the same point (lower is better);
- ``short_acc@k``: val accuracy of a separate run of k epochs with its own schedule (what ``compress`` does per
  candidate today with ``--epochs k``, and what ``--finalists`` does with ``--finalist-epochs k``);
- ``params`` and ``macs`` (the larger student ranked better: free to compute).

- ``rungs_acc@k``: with ``--rungs`` (e.g. 1,3,9): val accuracy after epoch k of a run whose schedule spans the
  last rung, as ``compress --rungs`` scores a rung;
- ``rungs 1,3,9 (ASHA)``: the ranking that multi-fidelity evaluation ends with, replayed over the candidates in
  order with ``--promote`` (highest rung reached first, then the score there), at its cost in epochs.

It also replays ways of choosing a student among the candidates, as ``compress`` would: the best
``short_acc@1`` (the one-fidelity search proxy), ``--finalists 3 --finalist-epochs 10`` (the three best by
``short_acc@1`` trained again for 10 epochs, the best of those) and, with rungs, the top of the ASHA ranking,
against the best possible choice. ``--add-rungs`` trains only the rung runs onto an existing results file.

    .venv/bin/python benchmarks/fidelity.py --name cnn1d-mnist1d --model cnn1d --dataset mnist1d \\
        --removable block,body,max-pool,linear --min-ratio 250 --max-ratio 400

Writes ``benchmarks/results/fidelity-NAME.json`` (every candidate's curves, so proxies can be re-derived) and
prints a table. Results depend on the seed set, not on machine load (costs are counted in epochs).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

import archcompress
from archcompress.api import train_teacher
from archcompress.data import DataOptions, Split
from archcompress.distill import TrainConfig, evaluate_accuracy, fit
from archcompress.distill.trainer import EpochStats
from archcompress.evaluate import Budget, EvalContext, worker_state
from archcompress.evaluate.budget import parse_rungs
from archcompress.evaluate.rungs import DEFAULT_PROMOTE, Ladder
from archcompress.evaluate.worker import WorkerState
from archcompress.runtime import atomic_write_text, cache_home, seed_everything
from archcompress.space import Candidate, SpaceOptions
from archcompress.space.options import parse_removable

RESULTS = Path(__file__).resolve().parent / "results"
RATIOS = (0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.5, 1.0)  # the quality benchmarks' ratio set


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="results go to benchmarks/results/fidelity-NAME.json")
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--teacher-epochs", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--min-ratio", type=float, default=250.0)
    parser.add_argument("--max-ratio", type=float, default=400.0)
    parser.add_argument("--final-epochs", type=int, default=60)
    parser.add_argument("--snapshots", default="1,2,3,5,10,20", help="epochs of the long run to read proxies at")
    parser.add_argument("--short", default="1,3,10", help="epochs of the separate short runs")
    parser.add_argument("--removable", default="block,body,max-pool,linear")
    parser.add_argument("--min-channels", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rungs", default="1,3,9", help="multi-fidelity rungs to replay (none: skip)")
    parser.add_argument("--promote", type=float, default=DEFAULT_PROMOTE, help="share of a rung promoted")
    parser.add_argument("--rederive", action="store_true", help="recompute the proxies of an existing results file")
    parser.add_argument("--add-rungs", action="store_true", help="train the --rungs runs onto an existing results file")
    return parser.parse_args()


class Curve:
    """A trainer callback that records val accuracy and val L2 to the teacher after every epoch."""

    def __init__(self, model: torch.nn.Module, val: Split, teacher_val: torch.Tensor) -> None:
        self.model, self.val, self.teacher_val = model, val, teacher_val
        self.accuracy: list[float] = []
        self.l2: list[float] = []

    def on_train_start(self, total_steps: int, epochs: int) -> None: ...

    def on_step(self, step: int, loss: float, accuracy: float) -> None: ...

    def on_epoch_end(self, stats: EpochStats) -> None:
        self.accuracy.append(float(stats.val_accuracy or 0.0))
        self.l2.append(val_l2(self.model, self.val, self.teacher_val))

    def on_train_end(self) -> None: ...


def logits(model: torch.nn.Module, split: Split) -> torch.Tensor:
    """The model's logits on a whole split, in order."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(batch.x) for batch in split.batches(512)])


def val_l2(model: torch.nn.Module, val: Split, teacher_val: torch.Tensor) -> float:
    """Mean squared distance between the student's and the teacher's val logits."""
    return float(((logits(model, val) - teacher_val) ** 2).mean())


def sample_candidates(state: WorkerState, args: argparse.Namespace) -> list[Candidate]:
    """Distinct valid random candidates whose compression lies in [min_ratio, max_ratio]."""
    space = state.space
    rng = np.random.default_rng(args.seed)
    teacher_params = space.teacher_cost.params
    found: dict[str, Candidate] = {}
    for _ in range(200_000):
        candidate = space.sample(rng)
        if space.check(candidate) is not None:
            continue
        ratio = teacher_params / space.cost(candidate).params
        if args.min_ratio <= ratio <= args.max_ratio:
            found.setdefault(space.candidate_hash(candidate), candidate)
        if len(found) == args.candidates:
            break
    if len(found) < args.candidates:
        raise SystemExit(f"only {len(found)} distinct candidates in [{args.min_ratio}, {args.max_ratio}]x")
    return list(found.values())


def train(state: WorkerState, candidate: Candidate, budget: Budget, epochs: int, seed: int, callback: Any = None):
    """Build the candidate (inheriting the teacher's weights) and distil it for ``epochs`` with its own schedule."""
    seed_everything(seed)
    built = state.space.build(candidate, inherit=True)
    config = replace(budget.train_config(seed), epochs=epochs)
    if callback is not None:
        callback.model = built.module
    fit(built.module, state.train, state.splits.val if callback else None, budget.loss_fn(state.targets), config,
        state.device, (callback,) if callback else ())  # fmt: skip
    return built


def tau(proxy: list[float], truth: list[float]) -> float:
    """Kendall tau-b between a proxy (higher = better) and the truth."""
    return float(kendalltau(proxy, truth).statistic)


def main() -> None:
    args = parse_args()
    if args.rederive:
        rederive(RESULTS / f"fidelity-{args.name}.json")
        return
    torch.set_num_threads(args.threads)
    if args.add_rungs:
        add_rungs(RESULTS / f"fidelity-{args.name}.json", args)
        return
    snapshots = [int(k) for k in args.snapshots.split(",")]
    shorts = [int(k) for k in args.short.split(",")]
    work = cache_home() / "bench" / f"fidelity-{args.name}"
    work.mkdir(parents=True, exist_ok=True)
    state, budget, teacher_val = set_up(work, args)
    teacher = state.teacher
    candidates = sample_candidates(state, args)
    print(f"{len(candidates)} candidates, {args.final_epochs}-epoch final runs", flush=True)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, candidate in enumerate(candidates):
        curve = Curve(torch.nn.Identity(), state.splits.val, teacher_val)
        built = train(state, candidate, budget, args.final_epochs, args.seed, curve)
        row: dict[str, Any] = {
            "candidate": candidate.to_dict(),
            "params": built.params,
            "macs": built.macs,
            "test_accuracy": evaluate_accuracy(built.module, state.splits.test, state.device),
            "val_accuracy_curve": curve.accuracy,
            "val_l2_curve": curve.l2,
            "short_val_accuracy": {},
        }
        for k in shorts:
            short = train(state, candidate, budget, k, args.seed)
            row["short_val_accuracy"][str(k)] = evaluate_accuracy(short.module, state.splits.val, state.device)
        if args.rungs != "none":
            row["rung_val_accuracy"] = {args.rungs: rung_curve(state, candidate, budget, args, teacher_val)}
        rows.append(row)
        print(f"  {index + 1}/{len(candidates)}: {built.params} params, test {row['test_accuracy']:.2%}, "
              f"short@1 {row['short_val_accuracy'].get('1', float('nan')):.2%}", flush=True)  # fmt: skip

    truth = [r["test_accuracy"] for r in rows]
    proxies = proxy_taus(rows, [k for k in snapshots if k <= args.final_epochs], shorts, args.promote)
    choices = choice_replays(rows, shorts, args.promote)

    meta = {"archcompress": archcompress.__version__, "torch": torch.__version__, "machine": platform.platform(),
            "seconds": time.perf_counter() - started}  # fmt: skip
    setting = {k: v for k, v in vars(args).items() if k != "threads"}
    teacher_info = {"model": args.model, "dataset": args.dataset, "params": state.space.teacher_cost.params,
                    "test_accuracy": teacher.meta.test_accuracy}  # fmt: skip
    result = {"setting": setting, "teacher": teacher_info, "proxies": proxies, "choices": choices,
              "chosen_proxy": chosen_proxy(proxies),
              "test_accuracy": {"min": min(truth), "max": max(truth), "median": statistics.median(truth)},
              "candidates": rows, "meta": meta}  # fmt: skip
    path = RESULTS / f"fidelity-{args.name}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"\nfinal test accuracy of the {len(rows)} candidates: {min(truth):.2%} to {max(truth):.2%}")
    for proxy in proxies:
        print(f"  {proxy['proxy']:<16} tau {proxy['tau']:+.2f}  (cost {proxy['epochs']} epochs per candidate)")
    for name, choice in choices.items():
        print(f"  choice {name:<28} test {choice['test_accuracy']:.2%} ({choice['epochs']} epochs in all)")
    print(f"written to {path}")


def set_up(work: Path, args: argparse.Namespace) -> tuple[WorkerState, Budget, torch.Tensor]:
    """The teacher (trained once, cached in ``work``), its space and data, the candidates' budget, and the teacher's
    val logits."""
    teacher_path = work / "teacher.pt"
    if not teacher_path.is_file():
        print(f"training the teacher: {args.model} on {args.dataset}, {args.teacher_epochs} epochs", flush=True)
        train_teacher(args.model, args.dataset, teacher_path, train=TrainConfig(epochs=args.teacher_epochs, seed=0))
    teacher = archcompress.load_teacher(teacher_path)
    budget = Budget(epochs=1, batch_size=args.batch_size, lr=args.lr)
    space_options = SpaceOptions(ratios=RATIOS, min_channels=args.min_channels,
                                 removable=parse_removable(args.removable))  # fmt: skip
    context = EvalContext(str(teacher_path), teacher.sha256, args.dataset, DataOptions(), budget,
                          str(work / "logits"), space=space_options)  # fmt: skip
    state = worker_state(context)
    return state, budget, logits(state.teacher.model, state.splits.val)


def rung_curve(
    state: WorkerState, candidate: Candidate, budget: Budget, args: argparse.Namespace, teacher_val: torch.Tensor
) -> list[float]:
    """Val accuracy after each epoch of one run whose schedule spans the last of ``args.rungs`` (a rung's view)."""
    curve = Curve(torch.nn.Identity(), state.splits.val, teacher_val)
    train(state, candidate, budget, parse_rungs(args.rungs)[-1], args.seed, curve)
    return curve.accuracy


def add_rungs(path: Path, args: argparse.Namespace) -> None:
    """Train the ``--rungs`` runs of the candidates of an existing results file, then re-derive its proxies."""
    result = json.loads(path.read_text())
    setting = result["setting"]
    for name in ("model", "dataset", "teacher_epochs", "removable", "min_channels", "batch_size", "lr", "seed"):
        setattr(args, name, setting[name])
    state, budget, teacher_val = set_up(cache_home() / "bench" / f"fidelity-{setting['name']}", args)
    for index, row in enumerate(result["candidates"]):
        curves = row.setdefault("rung_val_accuracy", {})
        if args.rungs not in curves:
            candidate = Candidate.from_dict(row["candidate"])
            curves[args.rungs] = rung_curve(state, candidate, budget, args, teacher_val)
            print(f"  {index + 1}/{len(result['candidates'])}: rung accuracies {curves[args.rungs]}", flush=True)
    setting["rungs"], setting["promote"] = args.rungs, args.promote
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    rederive(path)


def asha_ranking(curves: list[list[float]], rungs: tuple[int, ...], promote: float) -> tuple[list[int], int]:
    """Replay multi-fidelity evaluation over candidates arriving in order (each scored at its rungs' epochs of its
    curve): the candidates ranked as the final choice ranks them, and the epochs trained in all."""
    ladder = Ladder(len(rungs) - 1, promote)
    epochs = 0
    for index in range(len(curves)):
        queue = [(str(index), 0)]
        while queue:  # a result may promote others at once (a larger population lifts the quota)
            digest, rung = queue.pop(0)
            previous = rungs[rung - 1] if rung else 0
            epochs += rungs[rung] - previous
            ladder.add(rung, digest, curves[int(digest)][rungs[rung] - 1])
            queue += ladder.promotions()
    reached = {int(d): rung for rung, scores in enumerate(ladder.scores) for d in scores}
    order = sorted(range(len(curves)), key=lambda i: (-reached[i], -(ladder.scores[reached[i]][str(i)] or 0.0)))
    return order, epochs


def proxy_taus(
    rows: list[dict[str, Any]], snapshots: list[int], shorts: list[int], promote: float = DEFAULT_PROMOTE
) -> list[dict[str, Any]]:
    """Each proxy's Kendall tau against the final test accuracy, and its cost in epochs per candidate."""
    truth = [r["test_accuracy"] for r in rows]
    proxies: list[dict[str, Any]] = []
    for k in snapshots:
        proxies.append({"proxy": f"snapshot_acc@{k}", "epochs": k,
                        "tau": tau([r["val_accuracy_curve"][k - 1] for r in rows], truth)})  # fmt: skip
        proxies.append({"proxy": f"snapshot_l2@{k}", "epochs": k,
                        "tau": tau([-r["val_l2_curve"][k - 1] for r in rows], truth)})  # fmt: skip
    for k in shorts:
        proxies.append({"proxy": f"short_acc@{k}", "epochs": k,
                        "tau": tau([r["short_val_accuracy"][str(k)] for r in rows], truth)})  # fmt: skip
    for text in rows[0].get("rung_val_accuracy", {}):
        rungs = parse_rungs(text)
        curves = [r["rung_val_accuracy"][text] for r in rows]
        for k in rungs:
            proxies.append({"proxy": f"rungs_acc@{k}", "epochs": k, "tau": tau([c[k - 1] for c in curves], truth)})
        order, epochs = asha_ranking(curves, rungs, promote)
        position = {index: place for place, index in enumerate(order)}
        proxies.append({"proxy": f"rungs {text} (ASHA)", "epochs": round(epochs / len(rows), 2),
                        "tau": tau([-position[i] for i in range(len(rows))], truth)})  # fmt: skip
    proxies.append({"proxy": "params", "epochs": 0, "tau": tau([r["params"] for r in rows], truth)})
    proxies.append({"proxy": "macs", "epochs": 0, "tau": tau([r["macs"] for r in rows], truth)})
    return proxies


def chosen_proxy(proxies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What ``compress`` ranks by since multi-fidelity evaluation (the rung schedule's final ranking) beside the
    one-fidelity ``--epochs 1`` proxy it replaced; None before rungs were measured."""
    by_name = {p["proxy"]: p for p in proxies}
    rungs = next((p for p in proxies if p["proxy"].startswith("rungs ") and "ASHA" in p["proxy"]), None)
    if rungs is None or "short_acc@1" not in by_name:
        return None
    return {"proxy": rungs["proxy"], "tau": rungs["tau"], "epochs_per_candidate": rungs["epochs"],
            "one_epoch_tau": by_name["short_acc@1"]["tau"]}  # fmt: skip


def rederive(path: Path) -> None:
    """Recompute the proxies and choices of a results file from its stored curves (no training)."""
    result = json.loads(path.read_text())
    setting, rows = result["setting"], result["candidates"]
    snapshots = [int(k) for k in setting["snapshots"].split(",") if int(k) <= setting["final_epochs"]]
    shorts = [int(k) for k in setting["short"].split(",")]
    promote = setting.get("promote", DEFAULT_PROMOTE)
    result["proxies"] = proxy_taus(rows, snapshots, shorts, promote)
    result["choices"] = choice_replays(rows, shorts, promote)
    result["chosen_proxy"] = chosen_proxy(result["proxies"])
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"re-derived {path}")


def choice_replays(
    rows: list[dict[str, Any]], shorts: list[int], promote: float = DEFAULT_PROMOTE
) -> dict[str, dict[str, Any]]:
    """The student each way of choosing would pick, its final test accuracy and the training it cost."""
    count = len(rows)
    choices = {"best possible": {"test_accuracy": max(r["test_accuracy"] for r in rows), "epochs": None}}
    if "1" in rows[0]["short_val_accuracy"]:
        by_short = sorted(range(count), key=lambda i: -rows[i]["short_val_accuracy"]["1"])
        choices["best short_acc@1"] = {"test_accuracy": rows[by_short[0]]["test_accuracy"], "epochs": count}
        if 10 in shorts:
            finalists = by_short[:3]
            best = max(finalists, key=lambda i: rows[i]["short_val_accuracy"]["10"])
            choices["finalists 3 x 10 epochs"] = {"test_accuracy": rows[best]["test_accuracy"],
                                                  "epochs": count + 3 * 10}  # fmt: skip
    for text in rows[0].get("rung_val_accuracy", {}):
        order, epochs = asha_ranking([r["rung_val_accuracy"][text] for r in rows], parse_rungs(text), promote)
        choices[f"rungs {text} (ASHA)"] = {"test_accuracy": rows[order[0]]["test_accuracy"], "epochs": epochs}
    return choices


if __name__ == "__main__":
    main()
