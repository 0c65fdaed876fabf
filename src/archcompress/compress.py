"""The compression pipeline: search the teacher's space, distil the best candidate, test it once, report.

Writes the run directory of the spec: ``config.yaml``, ``store.sqlite``, ``student/`` (``arch.json`` +
``model.pt``), ``report.json`` and ``log.txt``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archcompress import __version__
from archcompress.checkpoint import Teacher, load_teacher
from archcompress.config import CompressConfig
from archcompress.data import load_dataset
from archcompress.distill import CachedLogits, evaluate_accuracy, fit
from archcompress.errors import ArchcompressError
from archcompress.evaluate import EvalContext, Evaluator, Result, ResultStore, make_executor, worker_state
from archcompress.evaluate.worker import WorkerState, training_logits
from archcompress.rundir import CONFIG_FILE, POLICIES_DIR, REPORT_FILE, STORE_FILE, STUDENT_DIR, TENSORBOARD_DIR, RunDir
from archcompress.runtime import atomic_write_text, resolve_device, seed_everything
from archcompress.search import RandomSearch, Search, choose_best, result_reward
from archcompress.search.n2n.search import N2NSearch, TeacherStats
from archcompress.space import BuildResult, CompressionSpace, load_student, save_student

log = logging.getLogger("archcompress")


@dataclass(frozen=True)
class CompressionResult:
    """What a compression run gives back: the trained student, the report and where everything is."""

    student: nn.Module
    report: dict[str, Any]
    run_dir: Path


def make_search(config: CompressConfig, space: CompressionSpace, teacher_accuracy: float) -> Search:
    """The search object for ``--method``."""
    if config.method == "random":
        return RandomSearch(space, config.seed)
    if config.method == "n2n":
        cost = space.teacher_cost
        teacher = TeacherStats(teacher_accuracy, cost.params, cost.macs)
        return N2NSearch(space, config.n2n, teacher, config.budget, config.seed, config.target)
    raise ArchcompressError(f"--method {config.method!r} is not available yet: use random or n2n")


def _check_teacher_matches_data(teacher: Teacher, dataset: str, input_shape: tuple[int, ...], classes: int) -> None:
    meta = teacher.meta
    if tuple(meta.input_shape) != tuple(input_shape):
        raise ArchcompressError(
            f"the teacher takes inputs of shape {tuple(meta.input_shape)} but data set {dataset!r} has "
            f"{tuple(input_shape)}: use the data set the teacher was trained on ({meta.dataset})"
        )
    if meta.num_classes != classes:
        raise ArchcompressError(
            f"the teacher has {meta.num_classes} outputs but data set {dataset!r} has {classes} classes: "
            f"use the data set the teacher was trained on ({meta.dataset})"
        )


def run_compression(
    config: CompressConfig, *, resume: bool = False, on_progress: Callable[[SearchStatus], None] | None = None
) -> CompressionResult:
    """Run one compression end to end as described by ``config`` (or continue it with ``resume``)."""
    config.validate()
    started = time.perf_counter()
    # Every check that can fail on bad input runs before the run directory is created.
    if not resume and Path(config.out).exists():
        RunDir(config.out, resume=False)  # raises the "already exists" error
    teacher = load_teacher(config.teacher)
    dataset = config.dataset or teacher.meta.dataset
    config = replace(config, dataset=dataset, teacher=str(Path(config.teacher).resolve()))
    splits = load_dataset(dataset, config.data)
    _check_teacher_matches_data(teacher, dataset, splits.info.input_shape, splits.info.num_classes)
    device = resolve_device(config.device)
    context = EvalContext(
        teacher_path=config.teacher,
        teacher_sha256=teacher.sha256,
        dataset=dataset,
        data=config.data,
        budget=config.candidate,
        device=config.device,
        space=config.space,
    )
    state = worker_state(context)  # also fills the teacher-logit cache before workers start
    space = state.space
    _check_target_reachable(space, config.target)
    teacher_val = evaluate_accuracy(state.teacher.model, splits.val, device)
    search = make_search(config, space, teacher_val)  # loads --policy files: may refuse them
    shared = ResultStore(Path(config.store)) if config.store else None  # refuses a corrupt or foreign file
    executor = make_executor(config.executor, config.workers, config.ray_address)
    try:
        run = RunDir(config.out, resume=resume)
    except BaseException:
        executor.close()  # e.g. a local Ray started for this run
        raise
    with run:
        if resume:
            log.info("resuming %s", run.path)
        atomic_write_text(run.file(CONFIG_FILE), config.to_yaml())
        teacher_params = space.teacher_cost.params
        log.info("teacher %s: val accuracy %.4f, %d params; %r", config.teacher, teacher_val, teacher_params, space)

        store = ResultStore(run.file(STORE_FILE))
        try:
            evaluator = Evaluator(
                context, store, executor, seed=config.seed, method=config.method, space=space, shared_store=shared
            )
            results = _search(
                config, evaluator, search, teacher_val, teacher_params, run.file(TENSORBOARD_DIR), on_progress
            )
            if isinstance(search, N2NSearch):
                run.file(POLICIES_DIR).mkdir(exist_ok=True)
                search.save_policies(run.file(POLICIES_DIR))
        finally:
            executor.close()
        search_seconds = time.perf_counter() - started

        best, target_met = choose_best(results, teacher_val, teacher_params, config.target)
        if best is None:
            raise ArchcompressError(
                f"none of the {len(results)} candidates trained successfully (see {run.file('log.txt')}): "
                "check the budget settings (e.g. a lower --lr) or raise --budget"
            )
        if config.target is not None and not target_met:
            log.warning(
                "no evaluated candidate reached the %.1fx target; distilling the best one instead", config.target
            )
        student, final = _final_distillation(config, state, best, device)
        save_student(student, run.file(STUDENT_DIR), {"val_accuracy": final["val_accuracy"]})
        report = _report(config, teacher, state, teacher_val, results, best, final, target_met, search_seconds,
                         time.perf_counter() - started)  # fmt: skip
        if isinstance(search, N2NSearch):
            report["n2n"] = {"updates": search.history, "policies": str(run.file(POLICIES_DIR))}
        run.write_json(REPORT_FILE, report)
        log.info(
            "student: test accuracy %.4f, %.1fx fewer params", final["test_accuracy"], report["compression"]["params"]
        )
        return CompressionResult(load_student(run.file(STUDENT_DIR)), report, run.path)


def _check_target_reachable(space: CompressionSpace, target: float | None) -> None:
    """Refuse a target that even the smallest student of the space cannot reach."""
    if target is not None and space.max_compression() < target:
        raise ArchcompressError(
            f"--target {target:g}x is out of reach: the smallest student of this space is "
            f"{space.max_compression():.1f}x smaller than the teacher; lower the target or add smaller ratios "
            "to the space (--ratios)"
        )


@dataclass
class SearchStatus:
    """What the live display and TensorBoard show after each evaluation."""

    teacher_params: int
    done: int
    last: Result | None
    best: Result | None  # the trained candidate with the best reward so far
    best_reward: float


def _search(
    config: CompressConfig,
    evaluator: Evaluator,
    search: Search,
    teacher_accuracy: float,
    teacher_params: int,
    tensorboard: Path,
    on_progress: Callable[[SearchStatus], None] | None,
) -> list[Result]:
    """Propose, evaluate (in parallel batches), observe, until the budget is spent.

    Every evaluation and every policy update is logged to ``log.txt`` and to TensorBoard event files.
    """
    from torch.utils.tensorboard import SummaryWriter

    results: list[Result] = []
    batch = getattr(search, "batch_size", max(1, config.workers))  # N2N: its rollouts per update
    status = SearchStatus(teacher_params, 0, None, None, -math.inf)
    started = time.perf_counter()
    writer = SummaryWriter(str(tensorboard))

    def record(result: Result) -> None:
        log.info(
            "candidate %s: %s, val acc %s, params %s%s", result.candidate_hash, result.status,
            result.val_accuracy, result.params, " (from store)" if result.from_store else "",
        )  # fmt: skip
        reward = result_reward(result, teacher_accuracy, teacher_params)
        status.done += 1
        status.last = result
        if result.ok and reward > status.best_reward:
            status.best, status.best_reward = result, reward
        step = status.done
        writer.add_scalar("search/reward", reward, step)
        writer.add_scalar("search/best_reward", status.best_reward, step)
        writer.add_scalar("search/best_reward_vs_seconds", status.best_reward, int(time.perf_counter() - started))
        if result.ok and result.params:
            writer.add_scalar("search/val_accuracy", result.val_accuracy or 0.0, step)
            writer.add_scalar("search/compression", teacher_params / result.params, step)
        if on_progress:
            on_progress(status)

    try:
        while len(results) < config.budget:
            proposals = search.propose(min(batch, config.budget - len(results)))
            batch_results = evaluator.evaluate_many(proposals, on_result=record)
            search.observe(batch_results)
            results.extend(batch_results)
            for name, value in (getattr(search, "history", None) or [{}])[-1].items():
                if name != "iteration":
                    writer.add_scalar(f"policy/{name}", value, len(results))
    finally:
        writer.close()
    return results


def _final_distillation(
    config: CompressConfig, state: WorkerState, best: Result, device: torch.device
) -> tuple[BuildResult, dict[str, Any]]:
    """Distil the chosen candidate for ``final_epochs`` on the whole training set, then test it once."""
    budget = config.candidate
    seed_everything(config.seed)
    built = state.space.build(best.candidate, inherit=budget.init == "inherit")
    targets = state.targets
    if budget.subset is not None and not budget.augment:
        # candidate targets cover the training subset only; the final student trains on every sample
        targets = CachedLogits(training_logits(state.context, state.teacher, state.splits, device))
    loss = budget.loss_fn(targets)
    train_config = replace(budget.train_config(config.seed), epochs=config.final_epochs, max_steps=None)
    started = time.perf_counter()
    fit(built.module, state.splits.train, None, loss, train_config, device)
    final = {
        "val_accuracy": evaluate_accuracy(built.module, state.splits.val, device),
        "test_accuracy": evaluate_accuracy(built.module, state.splits.test, device),
        "train_seconds": time.perf_counter() - started,
        "params": built.params,
        "macs": built.macs,
        "inherited_layers": built.inherited,
        "fresh_layers": built.fresh,
    }
    built.module.cpu()
    return built, final


def _report(
    config: CompressConfig,
    teacher: Teacher,
    state: WorkerState,
    teacher_val: float,
    results: list[Result],
    best: Result,
    final: dict[str, Any],
    target_met: bool,
    search_seconds: float,
    total_seconds: float,
) -> dict[str, Any]:
    teacher_test = evaluate_accuracy(state.teacher.model, state.splits.test, state.device)
    teacher_cost = state.space.teacher_cost
    params = teacher_cost.params
    ranked = sorted((r for r in results if r.ok), key=lambda r: -result_reward(r, teacher_val, params))
    statuses: dict[str, int] = {}
    for r in results:
        kind = r.status.split(":")[0]
        statuses[kind] = statuses.get(kind, 0) + 1
    return {
        "archcompress_version": __version__,
        "complete": True,
        "method": config.method,
        "dataset": config.dataset,
        "teacher": {
            "checkpoint": config.teacher,
            "sha256": teacher.sha256,
            "model": teacher.meta.model,
            "params": teacher_cost.params,
            "macs": teacher_cost.macs,
            "val_accuracy": teacher_val,
            "test_accuracy": teacher_test,
        },
        "student": {
            "candidate": best.candidate.to_dict(),
            "candidate_hash": best.candidate_hash,
            "search_val_accuracy": best.val_accuracy,
            **final,
        },
        "compression": {"params": params / final["params"], "macs": teacher_cost.macs / max(final["macs"], 1)},
        "target": {"ratio": config.target, "met": target_met},
        "search": {
            "evaluations": len(results),
            "statuses": statuses,
            "from_store": sum(r.from_store for r in results),
            "seconds": search_seconds,
        },
        "top_candidates": [
            {
                "candidate_hash": r.candidate_hash,
                "val_accuracy": r.val_accuracy,
                "params": r.params,
                "macs": r.macs,
                "reward": result_reward(r, teacher_val, params),
            }
            for r in ranked[:10]
        ],
        "seconds": total_seconds,
    }
