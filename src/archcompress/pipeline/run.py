"""The compression pipeline: prepare the method, search (if it has one), choose and distil the final student,
test it once, report. Writes the run directory of the spec: ``config.yaml``, ``store.sqlite``, ``student/``
(``arch.json`` + ``model.pt``), ``report.json``, ``report.html`` and ``log.txt``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from archcompress.checkpoint import Teacher, load_teacher
from archcompress.config import CompressConfig
from archcompress.data import load_dataset, with_recorded_splits
from archcompress.distill import evaluate_accuracy
from archcompress.errors import ArchcompressError
from archcompress.evaluate import EvalContext, Evaluator, Result, ResultStore, make_executor, worker_state
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.export import DEFAULT_FILES as EXPORT_FILES
from archcompress.methods import Method, MethodContext, get_method
from archcompress.pipeline.final import final_budget, final_checks, final_distillation
from archcompress.pipeline.interrupt import Interruption
from archcompress.pipeline.search import SearchStatus, drive_search
from archcompress.report import enrich_report, write_report
from archcompress.report.build import RunFacts, complete_report
from archcompress.rundir import (
    CONFIG_FILE,
    REPORT_FILE,
    REPORT_HTML,
    RUNGS_DIR,
    STORE_FILE,
    STUDENT_DIR,
    TENSORBOARD_DIR,
    RunDir,
    check_new_run_dir,
)
from archcompress.runtime import atomic_write_text, resolve_device
from archcompress.search import TeacherStats
from archcompress.search.choice import promotion_score
from archcompress.space import CompressionSpace, load_student, save_student

log = logging.getLogger("archcompress")


@dataclass(frozen=True)
class CompressionResult:
    """What a compression run gives back: the trained student, the report and where everything is."""

    student: nn.Module
    report: dict[str, Any]
    run_dir: Path
    already_complete: bool = False  # --resume of a finished run: nothing was run or written


def completed_run(out: str | Path) -> CompressionResult | None:
    """The result of a finished run in ``out`` (its complete report and student), or None if it is not finished."""
    path = Path(out)
    try:
        report = json.loads((path / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("complete") is not True or not (path / STUDENT_DIR).is_dir():
        return None
    return CompressionResult(load_student(path / STUDENT_DIR), report, path, already_complete=True)


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


def _check_target_reachable(space: CompressionSpace, target: float | None) -> None:
    """Refuse a target that even the smallest student of the space cannot reach."""
    if target is not None and space.max_compression() < target:
        raise ArchcompressError(
            f"--target {target:g}x is out of reach: the smallest student of this space is "
            f"{space.max_compression():.1f}x smaller than the teacher; lower the target or add smaller ratios "
            "to the space (--ratios)"
        )


def run_compression(
    config: CompressConfig, *, resume: bool = False, on_progress: Callable[[SearchStatus], None] | None = None
) -> CompressionResult:
    """Run one compression end to end as described by ``config`` (or continue it with ``resume``).

    A ``resume`` of a finished run with the same budget returns its result without touching any file.
    """
    config.validate()
    started = time.perf_counter()
    if resume:
        finished = completed_run(config.out)
        if finished is not None and finished.report.get("search", {}).get("budget", config.budget) >= config.budget:
            return finished  # a larger --budget continues the search instead
    # Every check that can fail on bad input runs before the run directory is created.
    if not resume:
        check_new_run_dir(Path(config.out))
    teacher = load_teacher(config.teacher)
    dataset = config.dataset or teacher.meta.dataset
    # the teacher's val fraction, split seed and image size, unless set (its val and test images were not trained on)
    data = with_recorded_splits(config.data, teacher.meta.extra.get("data"))
    config = replace(config, dataset=dataset, teacher=str(Path(config.teacher).resolve()), data=data)
    splits = load_dataset(dataset, config.data)
    _check_teacher_matches_data(teacher, dataset, splits.info.input_shape, splits.info.num_classes)
    device = resolve_device(config.device)
    method_class = get_method(config.method)
    latency_needed = method_class.objective_for(config) == "latency" or config.constraints.needs_latency
    context = EvalContext(
        teacher_path=config.teacher,
        teacher_sha256=teacher.sha256,
        dataset=dataset,
        data=config.data,
        budget=config.candidate,
        device=config.device,
        space=config.space,
        latency=latency_needed,
        threads=config.threads,
        checkpoint_dir=str(Path(config.out).resolve() / RUNGS_DIR),
    )
    state = worker_state(context)  # also fills the teacher-logit cache before workers start
    space = state.space
    teacher_val = evaluate_accuracy(state.teacher.model, splits.val, device)
    shared = ResultStore(Path(config.store)) if config.store else None  # refuses a corrupt or foreign file
    latency = measure_latency_ms(state.teacher.model, space.input_shape) if latency_needed else None
    cost = space.teacher_cost
    stats = TeacherStats(teacher_val, cost.params, cost.macs, latency)
    method: Method = method_class(MethodContext(config, state, context, stats, shared, resume))
    if method.searches:
        _check_target_reachable(space, config.target)
    method.prepare()  # may refuse bad input too (pruning to an unreachable size, a bad --policy file)
    executor = make_executor(config.executor, config.workers, config.ray_address, device=config.device,
                             workers_per_gpu=config.workers_per_gpu)  # fmt: skip
    try:
        run = RunDir(config.out, resume=resume, started=started)
    except BaseException:
        executor.close()  # e.g. a local Ray started for this run
        raise
    teacher_info = {"checkpoint": config.teacher, "sha256": teacher.sha256, "model": teacher.meta.model,
                    "params": cost.params, "macs": cost.macs, "val_accuracy": teacher_val}  # fmt: skip
    if latency is not None:
        teacher_info["latency_ms"] = latency  # what latency rewards and limits compare with
    facts = RunFacts(config.method, dataset, teacher_info, stats, config.constraints, method.objective(),
                     config.budget, 0.0, run.invocations)  # fmt: skip
    interruption = Interruption(run, facts)
    with run, interruption:  # Ctrl-C: a partial report.json (complete: false), then exit 130 via the CLI
        if resume:
            log.info("resuming %s (invocation %d)", run.path, run.invocations)
        atomic_write_text(run.file(CONFIG_FILE), config.to_yaml())
        method.start(run)
        log.info("teacher %s: val accuracy %.4f, %d params; %r", config.teacher, teacher_val, cost.params, space)
        log.info("method %s; constraints: %s", config.method, config.constraints.describe())
        for note in config.notes():
            log.warning("%s", note, extra={"console": True})
        chance = 1 / splits.info.num_classes
        if teacher_val < 1.5 * chance:  # "console": the CLI shows it too
            log.warning(
                "the teacher's val accuracy %.2f%% is near chance (%.2f%%): its students will learn nothing useful; "
                "train the teacher longer (train-teacher --epochs) before compressing it", 100 * teacher_val,
                100 * chance, extra={"console": True},
            )  # fmt: skip

        results: list[Result] = []
        rungs: dict[str, Any] | None = None  # multi-fidelity: how many candidates reached each rung
        try:
            if method.search is not None:
                score = promotion_score(stats, config.constraints, method.objective())
                evaluator = Evaluator(context, ResultStore(run.file(STORE_FILE)), executor, seed=config.seed,
                                      method=config.method, space=space, shared_store=shared, promote=config.promote,
                                      score=score)  # fmt: skip

                def progress(status: SearchStatus) -> None:
                    run.save_elapsed()  # a run killed outright still counts its time up to its last evaluation
                    if on_progress:
                        on_progress(status)

                batch = int(getattr(method.search, "batch_size", max(1, config.workers)))  # N2N: rollouts per update
                results = drive_search(
                    method.search, evaluator, config.budget, teacher=stats, constraints=config.constraints,
                    objective=method.objective(), batch=batch, tensorboard=run.file(TENSORBOARD_DIR),
                    on_progress=progress,
                )  # fmt: skip
                results = evaluator.at_best_fidelity(results)  # promotions that came after a proposal's result
                if config.candidate.rungs:
                    rungs = {"epochs": list(config.candidate.rungs), "promote": config.promote,
                             "candidates": evaluator.ladder.counts()}  # fmt: skip
                    log.info("candidates per rung (after %s epochs): %s", rungs["epochs"], rungs["candidates"])
                method.save_artifacts(run)
                if config.finalists > 1:  # longer runs of the best candidates, stored and resumable like the search's
                    finalist_budget = replace(config.candidate, epochs=config.finalist_epochs, rungs=())
                    longer = replace(context, budget=finalist_budget)
                    finals = Evaluator(longer, evaluator.store, executor, seed=config.seed, method=config.method,
                                       space=space, shared_store=shared)  # fmt: skip
                    method.context.evaluate_longer = finals.evaluate_many
            interruption.stage = "final distillation"
            chosen = method.choose_final(results)
        finally:
            executor.close()
        log.info("chosen student %s: %s", chosen.candidate_hash or "(no search candidate)", chosen.why)
        search_seconds = run.elapsed_seconds()  # over every invocation of a resumed run
        log.info("final distillation: %d epochs, %s loss", config.final_epochs, final_budget(config).loss)
        final = final_distillation(config, state, chosen, device)
        checks = final_checks(config, state, chosen, final)
        for check in checks:
            if not check.met:
                value = "unmeasured" if check.value is None else f"{check.value:g}"
                log.warning("the student misses the %s constraint (limit %g, value %s)", check.name, check.limit,
                            value, extra={"console": True})  # fmt: skip
        _remove_stale_exports(run.file(STUDENT_DIR))
        save_student(chosen.module, run.file(STUDENT_DIR), {"val_accuracy": final["val_accuracy"], **chosen.metadata})
        student = {**chosen.metadata, "candidate_hash": chosen.candidate_hash,
                   "search_val_accuracy": chosen.search_val_accuracy, **final}  # fmt: skip
        student.setdefault("test_accuracy", final["test_accuracy"])
        facts = replace(facts, seconds=run.elapsed_seconds(), invocations=run.invocations)
        teacher_test = evaluate_accuracy(state.teacher.model, splits.test, state.device)
        facts = replace(facts, teacher={**facts.teacher, "test_accuracy": teacher_test})
        report = complete_report(
            facts, results, student=student, final_checks=checks, chosen_hash=chosen.candidate_hash,
            why=chosen.why, search_seconds=search_seconds,
        )  # fmt: skip
        if chosen.finalists:
            report["chosen"]["finalists"] = chosen.finalists
        if rungs is not None:
            report["search"]["rungs"] = rungs
        report.update(method.report_extra(run))
        # latency (onnxruntime), file size and the per-layer table; then the HTML report from it all
        report = enrich_report(report, state.teacher.model, chosen.module, space.input_shape, space=space)
        run.write_json(REPORT_FILE, report)
        interruption.stage = None  # the complete report is written; a Ctrl-C now must not replace it
        write_report([run.path], run.file(REPORT_HTML))
        shutil.rmtree(run.file(RUNGS_DIR), ignore_errors=True)  # only a search in progress continues from them
        log.info(
            "student: test accuracy %.4f, %.1fx fewer params", final["test_accuracy"], report["compression"]["params"]
        )
        return CompressionResult(load_student(run.file(STUDENT_DIR)), report, run.path)


def _remove_stale_exports(student_dir: Path) -> None:
    """Exports of an earlier student (``archcompress export``) no longer match the one about to be saved."""
    for name in EXPORT_FILES.values():
        stale = student_dir / name
        if stale.is_file():
            stale.unlink()
            log.info("removed %s: it was exported from an earlier student of this run", stale)
