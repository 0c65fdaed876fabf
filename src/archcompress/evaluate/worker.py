"""What runs inside an executor: set up once per process, then train and score one candidate per job.

Jobs are plain picklable data (an ``EvalContext`` plus a candidate dict and a seed), so the inline, process
and Ray executors run exactly the same function.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from archcompress.checkpoint import Teacher, load_teacher
from archcompress.data import (
    DataOptions,
    DataSplits,
    Split,
    TensorSplit,
    load_dataset,
    split_options,
    stratified_holdout,
)
from archcompress.distill import (
    CachedLogits,
    LiveTeacher,
    TeacherTargets,
    TrainingDiverged,
    cached_teacher_logits,
    evaluate_accuracy,
    fit,
    split_key,
)
from archcompress.errors import first_line
from archcompress.evaluate.budget import Budget
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.evaluate.rungs import checkpoint_path, load_checkpoint, remove_checkpoints, save_checkpoint
from archcompress.runtime import cache_home, resolve_device, seed_everything, threads_for_student, torch_threads
from archcompress.space import Candidate, CompressionSpace, SpaceOptions


@dataclass(frozen=True)
class EvalContext:
    """Everything a worker needs to evaluate candidates of one search (shared by all its jobs)."""

    teacher_path: str
    teacher_sha256: str
    dataset: str
    data: DataOptions
    budget: Budget
    cache_dir: str = field(default_factory=lambda: str(cache_home() / "logits"))  # teacher-logit cache
    device: str = "cpu"
    space: SpaceOptions = field(default_factory=SpaceOptions)
    latency: bool = False  # also measure each student's CPU latency (``--objective latency``)
    threads: int | None = None  # torch threads per evaluation; None: chosen by the student's size
    # where a candidate's state is kept between rungs (budget.rungs); None: a promotion trains from the start
    checkpoint_dir: str | None = None

    def fingerprint(self) -> str:
        """Identifies the set-up work (teacher, data, space, budget) a worker can reuse between jobs."""
        fields = asdict(self)
        del fields["threads"], fields["checkpoint_dir"]  # how a job runs and saves, not what it sets up
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EvalOutcome:
    """What one evaluation produced (before it is stored)."""

    status: str  # ok | invalid | diverged | failed: reason
    val_accuracy: float | None = None
    params: int | None = None
    macs: int | None = None
    train_seconds: float | None = None
    inherited_layers: int | None = None
    fresh_layers: int | None = None
    latency_ms: float | None = None
    epochs: int | None = None  # epochs trained in all (across rungs)
    continued: bool = False  # trained on from the previous rung's checkpoint


@dataclass
class WorkerState:
    """Per-process set-up: teacher, data splits, space and the teacher targets for training."""

    context: EvalContext
    teacher: Teacher
    splits: DataSplits
    train: Split
    space: CompressionSpace
    targets: TeacherTargets
    device: torch.device


# One entry per context fingerprint: a worker process loads the teacher, the data and the logits once. Only the
# most recently used few are kept, so a notebook that compresses several teachers does not hold all of them (and
# their training-set logits) in memory.
MAX_CACHED_STATES = 2
_STATES: OrderedDict[str, WorkerState] = OrderedDict()
# Teacher logits handed to this process when it started (a process pool's shared-memory tensors), by fingerprint.
_PRELOADED: dict[str, torch.Tensor] = {}


def preload_logits(fingerprint: str, logits: torch.Tensor) -> None:
    """Give this process the training logits of a context before its first job (no disk read, no recompute)."""
    _PRELOADED.clear()  # one search at a time per pool
    _PRELOADED[fingerprint] = logits


def worker_state(context: EvalContext, logits: torch.Tensor | None = None) -> WorkerState:
    """The set-up for ``context`` in this process, built on first use.

    ``logits`` (the teacher's training-set logits) may be passed in, e.g. from Ray's object store;
    otherwise they come from the on-disk cache (computed there if missing).
    """
    key = context.fingerprint()
    if key in _STATES:
        _STATES.move_to_end(key)
        return _STATES[key]
    device = resolve_device(context.device)
    teacher = load_teacher(context.teacher_path)
    splits = load_dataset(context.dataset, context.data)
    space = context.space.space_of(teacher.model, teacher.meta.input_shape)
    train: Split = splits.train
    budget = context.budget
    targets: TeacherTargets
    if budget.augment:
        targets = LiveTeacher(teacher.model.to(device))
        if budget.subset is not None:
            train = _subset(train, budget.subset)[0]
    else:
        if logits is None:
            logits = _PRELOADED.get(key)
        if logits is None:
            logits = training_logits(context, teacher, splits, device)
        if budget.subset is not None:
            train, index = _subset(train, budget.subset)
            logits = logits[index]
        if device.type == "cuda":  # once per worker: no host-to-GPU copy per batch
            train = _on_device(train, device)
            splits = replace(splits, val=_on_device(splits.val, device))
            logits = logits.to(device)
        targets = CachedLogits(logits)
    state = WorkerState(context, teacher, splits, train, space, targets, device)
    _STATES[key] = state
    while len(_STATES) > MAX_CACHED_STATES:
        _STATES.popitem(last=False)  # the least recently used set-up
    return state


def training_logits(context: EvalContext, teacher: Teacher, splits: DataSplits, device: torch.device) -> torch.Tensor:
    """The teacher's logits for the whole (un-augmented) training split, from the on-disk cache."""
    key = split_key(context.teacher_sha256, context.dataset, splits.train, split_options(context.data))
    return cached_teacher_logits(teacher.model, splits.train, Path(context.cache_dir), key, device)


class _DeviceTensorSplit(TensorSplit):
    """An in-memory split whose samples, labels and normalisation constants live on ``device`` (a GPU)."""

    def __init__(self, split: TensorSplit, device: torch.device) -> None:
        super().__init__(split.info, split.raw.to(device), split.targets.to(device), split.scale)
        self._mean = self._mean.to(device)
        self._std = self._std.to(device)


def _on_device(split: Split, device: torch.device) -> Split:
    """``split`` held on ``device`` when it is an in-memory tensor split; other splits stream (pinned) batches."""
    if isinstance(split, TensorSplit) and split.raw.device != device:
        return _DeviceTensorSplit(split, device)
    return split


def _subset(split: Split, size: int) -> tuple[Split, torch.Tensor]:
    """A fixed, class-stratified subset of ``size`` samples (seed 0), and its indices in ``split``."""
    if not isinstance(split, TensorSplit) or size >= len(split):
        return split, torch.arange(len(split))
    _, held = stratified_holdout(split.labels().numpy(), size / len(split), seed=0)
    index = torch.as_tensor(held, dtype=torch.long)
    return split.subset(index), index


def run_job(
    context: EvalContext, candidate: dict[str, Any], seed: int, logits: torch.Tensor | None = None, rung: int = 0
) -> EvalOutcome:
    """Build, distil and score one candidate at ``rung`` (with ``budget.rungs``: on from the previous rung's
    checkpoint when there is one). Never raises for a bad candidate: the outcome says why."""
    state = worker_state(context, logits)
    space = state.space
    parsed = Candidate.from_dict(candidate)
    if space.check(parsed) is not None:
        return EvalOutcome(status="invalid")
    seed_everything(seed)
    try:
        built = space.build(parsed, inherit=context.budget.init == "inherit")
    except Exception as exc:  # a student that cannot be built is recorded, the search goes on
        return EvalOutcome(status=f"failed: build: {type(exc).__name__}: {first_line(exc)}")
    outcome: dict[str, Any] = {"params": built.params, "macs": built.macs, "inherited_layers": built.inherited,
               "fresh_layers": built.fresh}  # fmt: skip
    budget = context.budget
    loss = budget.loss_fn(state.targets)
    saved = _checkpoints(context, seed, space.candidate_hash(parsed), rung)
    resume = None
    if saved is not None and rung > 0:
        resume = load_checkpoint(saved[0], built.module)
        if resume is None:  # no usable checkpoint: the same run, from its start
            seed_everything(seed)
            built = space.build(parsed, inherit=context.budget.init == "inherit")
    # A tiny student is Python-bound: more intra-op threads only spin (and hurt when cores are shared).
    threads = threads_for_student(built.macs, torch.get_num_threads(), context.threads)
    started = time.perf_counter()
    try:
        with torch_threads(threads):
            history = fit(built.module, state.train, None, loss, budget.train_config(seed), state.device,
                          until_epoch=budget.rung_epochs(rung), resume=resume)  # fmt: skip
            accuracy = evaluate_accuracy(built.module, state.splits.val, state.device)
    except TrainingDiverged:
        return EvalOutcome(status="diverged", train_seconds=time.perf_counter() - started, **outcome)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        return EvalOutcome(status=f"failed: out of memory ({first_line(exc)})", **outcome)
    seconds = time.perf_counter() - started
    if saved is not None and history.state is not None:
        if rung < budget.top_rung:  # what a promotion continues from
            save_checkpoint(saved[1], built.module, history.state)
        remove_checkpoints([saved[0]])  # the previous rung's state is no longer needed
    latency = measure_latency_ms(built.module, space.input_shape) if context.latency else None
    epochs = history.state.epoch if history.state is not None else None
    return EvalOutcome(status="ok", val_accuracy=accuracy, train_seconds=seconds, latency_ms=latency, epochs=epochs,
                       continued=resume is not None, **outcome)  # fmt: skip


def _checkpoints(context: EvalContext, seed: int, digest: str, rung: int) -> tuple[Path, Path] | None:
    """(the previous rung's checkpoint, this rung's) of a candidate, or None without rungs or a checkpoint folder."""
    if not context.budget.rungs or context.checkpoint_dir is None:
        return None
    fingerprint = context.fingerprint()
    return (
        checkpoint_path(context.checkpoint_dir, fingerprint, seed, digest, rung - 1),
        checkpoint_path(context.checkpoint_dir, fingerprint, seed, digest, rung),
    )
