"""Predictor quality of the embedding method: does the codec's accuracy head rank unseen candidates?

Takes every candidate evaluated for one teacher by the quality benchmark's runs (``benchmarks/quality.py``
keeps their run directories; all runs share the teacher, the data split and the per-candidate budget, so
their stores are one data set), then 5-fold cross-validation: the codec model (``EmbeddingSearch``'s
encoder-decoder with its two regression heads, default settings) is trained on four folds and ranks the
fifth. Reported: Kendall's tau between predicted and measured val accuracy on the held-out candidates, beside
two predictors that see only the parameter count (the log parameter count itself, and a cubic polynomial in
it fitted on the training folds). Writes ``benchmarks/results/embedding-predictor.json``.

    .venv/bin/python benchmarks/embedding.py [--runs ~/.cache/archcompress/bench/vgg11-mnist5k]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

import archcompress
from archcompress.config import CompressConfig
from archcompress.evaluate import EvalContext, Evaluator, Result, ResultStore, make_executor, worker_state
from archcompress.runtime import cache_home
from archcompress.search.embedding import EmbeddingOptions, EmbeddingSearch
from archcompress.search.n2n.search import TeacherStats

RESULTS = Path(__file__).parent / "results" / "embedding-predictor.json"
FOLDS = 5


def known_results(runs: Path) -> tuple[list[Result], Any, CompressConfig]:
    """Every distinct, successfully trained candidate in the run directories under ``runs``."""
    configs = sorted(runs.glob("*/config.yaml"))
    if not configs:
        raise SystemExit(f"no run directories under {runs}: run benchmarks/quality.py first")
    config = CompressConfig.from_yaml(configs[0])
    context = EvalContext(config.teacher, archcompress.load_teacher(config.teacher).sha256, config.dataset or "",
                          config.data, config.candidate, space=config.space)  # fmt: skip
    state = worker_state(context)
    results: dict[str, Result] = {}
    for path in configs:
        other = CompressConfig.from_yaml(path)
        if (other.candidate, other.space, other.teacher) != (config.candidate, config.space, config.teacher):
            continue  # another budget or space: not the same data set
        store = ResultStore(path.parent / "store.sqlite")
        for result in Evaluator(context, store, make_executor("inline"), space=state.space).stored_results(store):
            if result.ok:
                results.setdefault(result.candidate_hash, result)
    return list(results.values()), state, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=cache_home() / "bench" / "vgg11-mnist5k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results, state, config = known_results(args.runs)
    space = state.space
    teacher_params = space.teacher_cost.params
    print(f"{len(results)} distinct evaluated candidates from {args.runs}")
    order = np.random.default_rng(args.seed).permutation(len(results))
    folds = np.array_split(order, FOLDS)
    teacher = TeacherStats(1.0, teacher_params, space.teacher_cost.macs)
    rows = []
    for index, held_index in enumerate(folds):
        held = [results[i] for i in held_index]
        train = [results[i] for j, fold in enumerate(folds) if j != index for i in fold]
        search = EmbeddingSearch(space, EmbeddingOptions(), teacher, budget=1, seed=args.seed, prior=train)
        search.fit_predictor()
        predicted = search.predict([r.candidate for r in held]).accuracy.numpy()
        measured = np.array([r.val_accuracy for r in held])
        log_params = np.log([r.params / teacher_params for r in held])  # type: ignore[operator]
        train_log = np.log([r.params / teacher_params for r in train])  # type: ignore[operator]
        cubic = np.polyfit(train_log, [r.val_accuracy for r in train], 3)
        row = {
            "fold": index,
            "train": len(train),
            "held_out": len(held),
            "codec_tau": float(kendalltau(predicted, measured).statistic),
            "log_params_tau": float(kendalltau(log_params, measured).statistic),
            "cubic_params_tau": float(kendalltau(np.polyval(cubic, log_params), measured).statistic),
        }
        rows.append(row)
        print(f"fold {index}: codec tau {row['codec_tau']:.3f}, log params {row['log_params_tau']:.3f}, "
              f"cubic in log params {row['cubic_params_tau']:.3f}")  # fmt: skip
    summary = {
        key: {"mean": statistics.fmean(r[key] for r in rows), "std": statistics.stdev(r[key] for r in rows)}
        for key in ("codec_tau", "log_params_tau", "cubic_params_tau")
    }
    report = {
        "question": "does the codec's accuracy head rank held-out candidates better than the parameter count?",
        "archcompress": archcompress.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "teacher": config.teacher,
        "candidates": len(results),
        "folds": rows,
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| predictor | Kendall tau (mean ± std over 5 folds) |\n|---|---|")
    for key, name in (("codec_tau", "codec accuracy head"), ("log_params_tau", "log parameter count"),
                      ("cubic_params_tau", "cubic in log parameter count")):  # fmt: skip
        print(f"| {name} | {summary[key]['mean']:.3f} ± {summary[key]['std']:.3f} |")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
