"""The compression pipeline: search the teacher's space, distil the best candidate, test it once, report.

Writes the run directory of the spec: ``config.yaml``, ``store.sqlite``, ``student/`` (``arch.json`` +
``model.pt``), ``report.json`` and ``log.txt``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.evaluate.worker import WorkerState, training_logits
from archcompress.prune import prune_to_params, to_student
from archcompress.report import enrich_report, write_report
from archcompress.rundir import (
    CODEC_DIR,
    CONFIG_FILE,
    POLICIES_DIR,
    PRIOR_FILE,
    REPORT_FILE,
    REPORT_HTML,
    STORE_FILE,
    STUDENT_DIR,
    TENSORBOARD_DIR,
    RunDir,
)
from archcompress.runtime import atomic_write_text, resolve_device, seed_everything
from archcompress.search import INVALID_REWARD, RandomSearch, Search, choose_best, n2n_reward, result_reward
from archcompress.search.embedding import EmbeddingSearch
from archcompress.search.loop import run_search
from archcompress.search.n2n.search import N2NSearch, TeacherStats
from archcompress.search.uniform import UniformSearch
from archcompress.space import CompressionSpace, Student, load_student, save_student

log = logging.getLogger("archcompress")


@dataclass(frozen=True)
class CompressionResult:
    """What a compression run gives back: the trained student, the report and where everything is."""

    student: nn.Module
    report: dict[str, Any]
    run_dir: Path


def make_search(
    config: CompressConfig,
    space: CompressionSpace,
    teacher_accuracy: float,
    teacher_latency_ms: float | None = None,
    prior: Sequence[Result] = (),
) -> Search:
    """The search object for ``--method`` (``prior``: earlier evaluations the embedding method learns from)."""
    if config.method == "random":
        return RandomSearch(space, config.seed)
    if config.method == "uniform":
        return UniformSearch(space, config.seed, config.target, config.uniform_depth, max(1, config.workers))
    cost = space.teacher_cost
    teacher = TeacherStats(teacher_accuracy, cost.params, cost.macs, teacher_latency_ms)
    if config.method == "n2n":
        return N2NSearch(space, config.n2n, teacher, config.budget, config.seed, config.target)
    if config.method == "embedding":
        return EmbeddingSearch(space, config.embedding, teacher, config.budget, config.seed, config.target, prior)
    raise ArchcompressError(f"--method {config.method!r} has no search (prune is not one): use n2n or embedding")


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    """How many evaluations ended in each kind of status (``failed: reason`` counts as ``failed``)."""
    return dict(Counter(status.split(":")[0] for status in statuses))


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
        latency=config.n2n.objective == "latency",
    )
    state = worker_state(context)  # also fills the teacher-logit cache before workers start
    space = state.space
    pruning = config.method == "prune"
    if not pruning:
        _check_target_reachable(space, config.target)
    teacher_val = evaluate_accuracy(state.teacher.model, splits.val, device)
    shared = ResultStore(Path(config.store)) if config.store else None  # refuses a corrupt or foreign file
    latency = measure_latency_ms(state.teacher.model, space.input_shape) if context.latency else None
    # pruning may refuse its target, make_search a --policy file: both before the run directory exists
    pruned = _pruned_student(state, _prune_target(config, space.teacher_cost.params)) if pruning else None
    prior = _embedding_prior(config, context, space, shared, resume) if config.method == "embedding" else []
    search = None if pruning else make_search(config, space, teacher_val, latency, prior)
    executor = make_executor(config.executor, config.workers, config.ray_address)
    try:
        run = RunDir(config.out, resume=resume, started=started)
    except BaseException:
        executor.close()  # e.g. a local Ray started for this run
        raise
    interruption = Interruption(run, config, teacher.sha256, teacher_val, space.teacher_cost.params)
    with run, interruption:  # Ctrl-C: a partial report.json (complete: false), then exit 130 via the CLI
        if resume:
            log.info("resuming %s (invocation %d)", run.path, run.invocations)
        atomic_write_text(run.file(CONFIG_FILE), config.to_yaml())
        if config.method == "embedding" and not resume:
            # --resume must see the same prior, though the shared store then also holds this run's results
            run.write_json(PRIOR_FILE, {"candidate_hashes": [r.candidate_hash for r in prior]})
        teacher_params = space.teacher_cost.params
        log.info("teacher %s: val accuracy %.4f, %d params; %r", config.teacher, teacher_val, teacher_params, space)
        chance = 1 / splits.info.num_classes
        if teacher_val < 1.5 * chance:  # "console": the CLI shows it too
            log.warning(
                "the teacher's val accuracy %.2f%% is near chance (%.2f%%): its students will learn nothing useful; "
                "train the teacher longer (train-teacher --epochs) before compressing it", 100 * teacher_val,
                100 * chance, extra={"console": True},
            )  # fmt: skip

        store = ResultStore(run.file(STORE_FILE))
        results: list[Result] = []
        try:
            if search is not None:
                evaluator = Evaluator(
                    context, store, executor, seed=config.seed, method=config.method, space=space, shared_store=shared
                )

                def progress(status: SearchStatus) -> None:
                    run.save_elapsed()  # a run killed outright still counts its time up to its last evaluation
                    if on_progress:
                        on_progress(status)

                results = _search(
                    config, evaluator, search, teacher_val, teacher_params, run.file(TENSORBOARD_DIR), progress
                )
                if isinstance(search, N2NSearch):
                    run.file(POLICIES_DIR).mkdir(exist_ok=True)
                    search.save_policies(run.file(POLICIES_DIR))
                if isinstance(search, EmbeddingSearch):
                    search.save_codec(run.file(CODEC_DIR))
        finally:
            executor.close()
        interruption.stage = "final distillation"
        chosen = pruned or _best_candidate(config, state, results, teacher_val)
        search_seconds = run.elapsed_seconds()  # over every invocation of a resumed run
        target_met = config.target is None or teacher_params / chosen.params >= config.target
        if not target_met:
            log.warning("no evaluated candidate reached the %.1fx target; distilling the best one instead",
                        config.target)  # fmt: skip
        final = _final_distillation(config, state, chosen, device)
        save_student(chosen.module, run.file(STUDENT_DIR), {"val_accuracy": final["val_accuracy"], **chosen.metadata})
        report = _report(config, teacher, state, teacher_val, results, chosen, final, target_met, search_seconds,
                         run.elapsed_seconds(), run.invocations)  # fmt: skip
        if isinstance(search, N2NSearch):
            report["n2n"] = {"updates": search.history, "policies": str(run.file(POLICIES_DIR))}
        if isinstance(search, EmbeddingSearch):
            report["embedding"] = {"rounds": search.history, "codec": str(run.file(CODEC_DIR)),
                                   "prior_results": len(prior)}  # fmt: skip
        # latency (onnxruntime), file size and the per-layer table; then the HTML report from it all
        report = enrich_report(report, state.teacher.model, chosen.module, space.input_shape, space=space)
        run.write_json(REPORT_FILE, report)
        interruption.stage = None  # the complete report is written; a Ctrl-C now must not replace it
        write_report([run.path], run.file(REPORT_HTML))
        log.info(
            "student: test accuracy %.4f, %.1fx fewer params", final["test_accuracy"], report["compression"]["params"]
        )
        return CompressionResult(load_student(run.file(STUDENT_DIR)), report, run.path)


@dataclass
class Interruption:
    """Writes a partial ``report.json`` (``"complete": false``) and ``report.html`` when Ctrl-C stops a run.

    The report lists every evaluation in the run's store (what ``--resume`` reuses); the interrupt is not
    swallowed, so the CLI still exits with code 130. ``stage`` is what was running; None once the complete
    report is written.
    """

    run: RunDir
    config: CompressConfig
    teacher_sha256: str
    teacher_val: float
    teacher_params: int
    stage: str | None = "search"

    def __enter__(self) -> Interruption:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None or not issubclass(kind, KeyboardInterrupt) or self.stage is None:
            return
        try:
            self.run.write_json(REPORT_FILE, self.partial_report())
            log.warning(
                "interrupted during the %s: partial report in %s; continue with `archcompress compress --resume "
                "--out %s`", self.stage, self.run.file(REPORT_FILE), self.run.path, extra={"console": True},
            )  # fmt: skip
            write_report([self.run.path], self.run.file(REPORT_HTML), measure=False)
        except Exception as exc:  # e.g. a full disk: the interrupt, not this, is what the user must see
            log.warning("interrupted; the partial report could not be written (%s)", exc)

    def partial_report(self) -> dict[str, Any]:
        """The report of an unfinished run: settings, teacher and the evaluations stored so far."""
        config, params, accuracy = self.config, self.teacher_params, self.teacher_val
        rows = ResultStore(self.run.file(STORE_FILE)).query(teacher_hash=self.teacher_sha256)
        statuses = status_counts(row.status for row in rows)
        rewards = [
            n2n_reward(row.val_accuracy, row.params, accuracy, params)
            if row.status == "ok" and row.val_accuracy is not None and row.params
            else INVALID_REWARD
            for row in rows
        ]
        evaluations = [
            {"candidate_hash": row.key.candidate_hash, "status": row.status, "val_accuracy": row.val_accuracy,
             "params": row.params, "macs": row.macs, "reward": reward}
            for row, reward in zip(rows, rewards, strict=True)
        ]  # fmt: skip
        ranked = sorted(range(len(rows)), key=lambda i: -rewards[i])
        return {
            "archcompress_version": __version__,
            "complete": False,
            "interrupted": self.stage,
            "resume": f"archcompress compress --resume --out {self.run.path}",
            "method": config.method,
            "dataset": config.dataset,
            "teacher": {"checkpoint": config.teacher, "sha256": self.teacher_sha256, "params": params,
                        "val_accuracy": accuracy},
            "target": {"ratio": config.target, "met": None},
            "search": {"evaluations": len(rows), "statuses": statuses, "budget": config.budget},
            "evaluations": evaluations,
            "top_candidates": [evaluations[i] for i in ranked if rows[i].status == "ok"][:10],
            "seconds": self.run.elapsed_seconds(),
            "invocations": self.run.invocations,
        }  # fmt: skip


@dataclass
class ChosenStudent:
    """The student that gets the final distillation: the best candidate of a search, or the pruned teacher."""

    module: Student
    params: int
    macs: int
    metadata: dict[str, Any]  # stored in arch.json and the report (candidate, or pruning details)
    search_val_accuracy: float | None = None
    candidate_hash: str | None = None


def _best_candidate(
    config: CompressConfig, state: WorkerState, results: list[Result], teacher_val: float
) -> ChosenStudent:
    params = state.space.teacher_cost.params
    best, _ = choose_best(results, teacher_val, params, config.target)
    if best is None:
        raise ArchcompressError(
            f"none of the {len(results)} candidates trained successfully (see the run's log.txt): "
            "check the budget settings (e.g. a lower --lr) or raise --budget"
        )
    seed_everything(config.seed)
    built = state.space.build(best.candidate, inherit=config.candidate.init == "inherit")
    metadata = {"candidate": best.candidate.to_dict(), "inherited_layers": built.inherited,
                "fresh_layers": built.fresh}  # fmt: skip
    return ChosenStudent(built.module, built.params, built.macs, metadata, best.val_accuracy, best.candidate_hash)


PRUNE_TOLERANCE = 0.02  # pruning lands within 2% of its target count; aim below the limit by that much


def _prune_target(config: CompressConfig, teacher_params: int) -> int:
    """The parameter count ``--method prune`` prunes to: just below ``--target`` and ``--max-params``."""
    limits = [math.floor(teacher_params / config.target)] if config.target else []
    if config.n2n.max_params:
        limits.append(config.n2n.max_params)
    if not limits:
        raise ArchcompressError("--method prune needs a size to prune to: give --target (e.g. 10x) or --max-params")
    return math.floor(min(limits) * (1.0 - PRUNE_TOLERANCE))


def _pruned_student(state: WorkerState, target_params: int) -> ChosenStudent:
    """L1 channel pruning of the teacher (Torch-Pruning) to ``target_params``, as a student to distil."""
    shape = state.space.input_shape
    example = torch.zeros(1, *shape).to(state.device)
    pruned = prune_to_params(state.teacher.model, example, target_params, tolerance=PRUNE_TOLERANCE)
    log.info("pruned the teacher: %.1f%% of each layer's channels removed, %d params", 100 * pruned.ratio,
             pruned.params)  # fmt: skip
    module = to_student(pruned.module.cpu(), shape)
    metadata = {"method": "prune", "pruning_ratio": pruned.ratio, "target_params": target_params}
    return ChosenStudent(module, pruned.params, pruned.macs, metadata)


def _embedding_prior(
    config: CompressConfig, context: EvalContext, space: CompressionSpace, shared: ResultStore | None, resume: bool
) -> list[Result]:
    """Earlier evaluations of this teacher, data set and budget in the ``--store`` (e.g. an N2N run's).

    A resumed run takes exactly the prior its first start took (``prior.json``), so it proposes the same
    candidates even though the shared store now also holds this run's own results.
    """
    if shared is None:
        return []
    known = Evaluator(context, shared, make_executor("inline"), space=space).stored_results(shared)
    listed = Path(config.out) / PRIOR_FILE
    if resume and listed.is_file():
        wanted = set(json.loads(listed.read_text())["candidate_hashes"])
        known = [r for r in known if r.candidate_hash in wanted]
    unique = {r.candidate_hash: r for r in known}  # one result per candidate (the latest seed's)
    log.info("embedding: %d earlier evaluations in %s serve as training data", len(unique), config.store)
    return list(unique.values())


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
    """Run the search loop (:func:`~archcompress.search.loop.run_search`) until the budget is spent.

    Every evaluation and every policy update is logged to ``log.txt`` and to TensorBoard event files.
    """
    from torch.utils.tensorboard import SummaryWriter

    batch = getattr(search, "batch_size", max(1, config.workers))  # N2N: its rollouts per update
    seen: set[str] = set()
    status = SearchStatus(teacher_params, 0, None, None, -math.inf)
    started = time.perf_counter()
    writer = SummaryWriter(str(tensorboard))

    def record(result: Result) -> None:
        log.info(
            "candidate %s: %s, val acc %s, params %s%s", result.candidate_hash, result.status,
            result.val_accuracy, result.params, " (from store)" if result.from_store else "",
        )  # fmt: skip
        reward = result_reward(result, teacher_accuracy, teacher_params)
        seen.add(result.candidate_hash)
        status.done = len(seen)  # distinct candidates, as the budget counts them
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

    def updated(batch_results: list[Result]) -> None:
        for name, value in (getattr(search, "history", None) or [{}])[-1].items():
            if name != "iteration":
                writer.add_scalar(f"policy/{name}", value, status.done)

    try:
        return run_search(search, evaluator, config.budget, batch=batch, on_result=record, on_update=updated)
    finally:
        writer.close()


def _final_distillation(
    config: CompressConfig, state: WorkerState, chosen: ChosenStudent, device: torch.device
) -> dict[str, Any]:
    """Distil the chosen student for ``final_epochs`` on the whole training set, then test it once."""
    budget = config.candidate
    seed_everything(config.seed)
    module = chosen.module
    targets = state.targets
    if budget.subset is not None and not budget.augment:
        # candidate targets cover the training subset only; the final student trains on every sample
        targets = CachedLogits(training_logits(state.context, state.teacher, state.splits, device))
    loss = budget.loss_fn(targets)
    train_config = replace(budget.train_config(config.seed), epochs=config.final_epochs, max_steps=None)
    started = time.perf_counter()
    fit(module, state.splits.train, None, loss, train_config, device)
    final = {
        "val_accuracy": evaluate_accuracy(module, state.splits.val, device),
        "test_accuracy": evaluate_accuracy(module, state.splits.test, device),
        "train_seconds": time.perf_counter() - started,
        "params": chosen.params,
        "macs": chosen.macs,
    }
    module.cpu()
    return final


def _report(
    config: CompressConfig,
    teacher: Teacher,
    state: WorkerState,
    teacher_val: float,
    results: list[Result],
    chosen: ChosenStudent,
    final: dict[str, Any],
    target_met: bool,
    search_seconds: float,
    total_seconds: float,
    invocations: int,
) -> dict[str, Any]:
    teacher_test = evaluate_accuracy(state.teacher.model, state.splits.test, state.device)
    teacher_cost = state.space.teacher_cost
    params = teacher_cost.params
    ranked = sorted((r for r in results if r.ok), key=lambda r: -result_reward(r, teacher_val, params))
    statuses = status_counts(r.status for r in results)
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
            **chosen.metadata,
            "candidate_hash": chosen.candidate_hash,
            "search_val_accuracy": chosen.search_val_accuracy,
            **final,
        },
        "compression": {"params": params / final["params"], "macs": teacher_cost.macs / max(final["macs"], 1)},
        "target": {"ratio": config.target, "met": target_met},
        "search": {
            "evaluations": len({r.candidate_hash for r in results}),  # distinct candidates: the budget
            "proposals": len(results),
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
        "seconds": total_seconds,  # wall time, summed over the invocations of a resumed run
        "invocations": invocations,
    }
