"""Paper-scale runs from ``configs/*.yaml``: train the teacher, then compress it; ``--dry-run`` checks and prices it.

A config has two sections: ``teacher:`` (model, model kwargs, data set, device and the ``TrainConfig`` fields) and
``compress:`` (``CompressConfig`` fields without ``teacher`` and ``out``, which this script fills in). See
``configs/README.md`` for where every number comes from.

    # on a GPU machine with the data under ~/data: train the teacher (skipped if OUT/teacher.pt exists), compress
    .venv/bin/python benchmarks/paper.py configs/cifar10-resnet34-n2n.yaml --data-root ~/data --device cuda

    # anywhere, in seconds: build the teacher and space, validate, time a few steps, estimate the whole run
    .venv/bin/python benchmarks/paper.py configs/cifar10-resnet34-n2n.yaml --dry-run

Outputs go to ``--out`` (default ``runs/paper/DATASET-MODEL``): ``teacher.pt``, ``paper.yaml`` (the config used)
and one run directory per method (``n2n/``, ``embedding/``, ...). Configs that share a teacher section therefore
share the teacher checkpoint; a checkpoint trained with another model, data set or epoch count is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from archcompress.api import train_teacher
from archcompress.checkpoint import load_teacher, read_checkpoint
from archcompress.config import CompressConfig, _build  # _build: the same typed YAML -> dataclass reading
from archcompress.data import Augmentation, DataOptions, DatasetInfo, TensorSplit, dataset_sources, load_dataset
from archcompress.data.registry import IMAGEFOLDER_PREFIX
from archcompress.data.torchvision_sets import CIFAR10_STATS, CIFAR100_STATS, FASHION_STATS, MNIST_STATS, SVHN_STATS
from archcompress.distill import (
    CachedLogits,
    EpochStats,
    LiveTeacher,
    LossFn,
    TeacherTargets,
    TrainConfig,
    cross_entropy,
    evaluate_accuracy,
    fit,
)
from archcompress.errors import ArchcompressError, first_line, unknown_name_error
from archcompress.methods import MethodContext, get_method
from archcompress.models import check_model_io, create_model, reference_kind, zoo_entry
from archcompress.pipeline import run_compression
from archcompress.runtime import resolve_device, seed_everything
from archcompress.search import TeacherStats
from archcompress.space import CompressionSpace

TEACHER_KEYS = {"model", "model_kwargs", "dataset", "device"}  # besides the TrainConfig fields
PLACEHOLDER_TEACHER = "TEACHER.pt"  # CompressConfig needs a teacher and an out; the runner fills in real ones
PLACEHOLDER_OUT = "RUN"
TIMED_STEPS = 2  # timed optimiser steps per model, after WARMUP_STEPS untimed ones
WARMUP_STEPS = 1
STUDENTS = 3  # random candidates built and timed by the dry run
# On CPU a step of batch B costs about 3 * B * MACs (forward + backward); the dry run times each model at the
# largest batch whose forward pass stays under this many MACs, and scales per sample to the configured batch.
CPU_STEP_MACS = 1.5e9
EVAL_BATCH = 512  # evaluate_accuracy's batch: what val and test passes use


@dataclass(frozen=True)
class KnownSet:
    """A torchvision data set's shape and official sizes, known without reading its files."""

    info: DatasetInfo
    train: int  # official training samples (val is held out of these)
    test: int
    files: tuple[str, ...]  # what torchvision expects under --data-root


# The same DatasetInfo the loaders in archcompress.data.torchvision_sets build once the files are read.
KNOWN_SETS = {
    "mnist": KnownSet(
        DatasetInfo("mnist", (1, 28, 28), 10, *MNIST_STATS, Augmentation(shift=2)), 60_000, 10_000, ("MNIST/raw",)
    ),
    "fashion-mnist": KnownSet(
        DatasetInfo("fashion-mnist", (1, 28, 28), 10, *FASHION_STATS, Augmentation(shift=2, hflip=True)),
        60_000,
        10_000,
        ("FashionMNIST/raw",),
    ),
    "cifar10": KnownSet(
        DatasetInfo("cifar10", (3, 32, 32), 10, *CIFAR10_STATS, Augmentation(shift=4, hflip=True)),
        50_000,
        10_000,
        ("cifar-10-batches-py",),
    ),
    "cifar100": KnownSet(
        DatasetInfo("cifar100", (3, 32, 32), 100, *CIFAR100_STATS, Augmentation(shift=4, hflip=True)),
        50_000,
        10_000,
        ("cifar-100-python",),
    ),
    "svhn": KnownSet(
        DatasetInfo("svhn", (3, 32, 32), 10, *SVHN_STATS, Augmentation(shift=4)),
        73_257,
        26_032,
        ("train_32x32.mat", "test_32x32.mat"),
    ),
}


# --- the config file ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherSpec:
    """The ``teacher:`` section: what to train, on what, and how."""

    model: str
    dataset: str
    model_kwargs: dict[str, Any]
    device: str
    train: TrainConfig


@dataclass(frozen=True)
class PaperConfig:
    """One paper-scale setting: a teacher to train and a compression of it (with placeholder teacher/out)."""

    path: Path
    teacher: TeacherSpec
    compress: CompressConfig


def load_config(path: str | Path) -> PaperConfig:
    """Read and check a paper config; every problem is an ``ArchcompressError`` naming the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ArchcompressError(f"cannot read config {path} ({first_line(exc)}): check the file") from exc
    if not isinstance(raw, dict) or set(raw) != {"teacher", "compress"}:
        found = ", ".join(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise ArchcompressError(f"config {path} must have exactly two sections, teacher: and compress: (found {found})")
    for section in ("teacher", "compress"):
        if not isinstance(raw[section], dict):
            raise ArchcompressError(f"config {path}: section {section}: must be a mapping of settings")
    teacher = _teacher_spec(dict(raw["teacher"]), f"{path}:teacher")
    compress = _compress_config(dict(raw["compress"]), teacher, f"{path}:compress")
    return PaperConfig(path, teacher, compress)


def _teacher_spec(section: dict[str, Any], where: str) -> TeacherSpec:
    for key in ("model", "dataset"):
        if not isinstance(section.get(key), str):
            raise ArchcompressError(f"config {where}: needs {key}: NAME (a string), got {section.get(key)!r}")
    model, dataset = section.pop("model"), section.pop("dataset")
    kwargs = section.pop("model_kwargs", None) or {}
    if not isinstance(kwargs, dict):
        raise ArchcompressError(f"config {where}: model_kwargs must be a mapping (e.g. {{width: 0.5}}), got {kwargs!r}")
    device = section.pop("device", "auto")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(section) - fields)
    if unknown:
        known = ", ".join(sorted(TEACHER_KEYS | fields))
        raise ArchcompressError(f"config {where}: unknown setting(s) {', '.join(unknown)} (known: {known})")
    if reference_kind(model) == "zoo":
        zoo_entry(model)  # an unknown name raises with the closest suggestions
    _check_dataset_name(dataset, where)
    _check_device_name(device, where)
    train: TrainConfig = _build(TrainConfig, section, where)
    train.validate()
    return TeacherSpec(model, dataset, dict(kwargs), device, train)


def _compress_config(section: dict[str, Any], teacher: TeacherSpec, where: str) -> CompressConfig:
    for key in ("teacher", "out"):
        if key in section:
            raise ArchcompressError(f"config {where}: remove {key}: (the runner fills it in from --out)")
    dataset = section.get("dataset")
    if dataset not in (None, teacher.dataset):
        raise ArchcompressError(
            f"config {where}: dataset {dataset!r} differs from the teacher's {teacher.dataset!r}: drop it or make "
            "them equal"
        )
    config = CompressConfig.from_mapping({"teacher": PLACEHOLDER_TEACHER, "out": PLACEHOLDER_OUT, **section}, where)
    config = replace(config, dataset=teacher.dataset)
    config.validate()
    _check_device_name(config.device, where)
    return config


def _check_dataset_name(name: str, where: str) -> None:
    if name.startswith(IMAGEFOLDER_PREFIX):
        return
    known = {source.name for source in dataset_sources()}
    if name not in known:
        raise unknown_name_error("data set", name, known, hint=f"in config {where}: run `archcompress datasets`")


def _check_device_name(device: str, where: str) -> None:
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ArchcompressError(f"config {where}: device must be auto, cpu, cuda or cuda:N, got {device!r}")


# --- data shape without the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DataShape:
    """A data set's shape and split sizes, from its files when present, else from its official sizes."""

    info: DatasetInfo
    train: int
    val: int
    test: int
    real: bool  # the files were found and read
    note: str


def describe_data(name: str, options: DataOptions) -> DataShape:
    """Shape and split sizes of ``name``; reads the data when it is there (offline sets always are)."""
    known = KNOWN_SETS.get(name)
    if known is None:
        splits = load_dataset(name, options)
        sizes = len(splits.train), len(splits.val), len(splits.test)
        return DataShape(splits.info, *sizes, real=True, note="loaded (available without --data-root)")
    root = Path(options.data_root).expanduser() if options.data_root else None
    if root is not None and all((root / file).exists() for file in known.files):
        try:
            splits = load_dataset(name, options)
        except ArchcompressError as exc:
            why = f"present under {root} but not readable: {exc}"
        else:
            sizes = len(splits.train), len(splits.val), len(splits.test)
            return DataShape(splits.info, *sizes, real=True, note=f"real data found under {root} and read")
    else:
        why = f"not found under --data-root {root}" if root else "no --data-root given"
    val = round(known.train * options.val_fraction)  # the stratified holdout rounds per class: +-1 per class
    note = f"{why}; split sizes are the official ones with {options.val_fraction:.0%} held out for val"
    return DataShape(known.info, known.train - val, val, known.test, real=False, note=note)


def synthetic_split(info: DatasetInfo, count: int, seed: int = 0) -> TensorSplit:
    """Random samples of the data set's shape and dtype (uint8 images or float signals) with random labels."""
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *info.input_shape)
    if len(info.input_shape) == 3:  # images are stored as uint8 and scaled to [0, 1] per batch
        raw = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        scale = 1.0 / 255.0
    else:
        raw, scale = torch.randn(shape, generator=generator), 1.0
    labels = torch.randint(0, info.num_classes, (count,), generator=generator)
    return TensorSplit(info, raw, labels, scale)


# --- timing ------------------------------------------------------------------------------------------------


class _StepClock:
    """A trainer callback that records when each optimiser step finished (the trainer syncs on ``loss.item()``)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_start(self, total_steps: int, epochs: int) -> None:
        self.stamps = [time.perf_counter()]

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        self.stamps.append(time.perf_counter())

    def on_epoch_end(self, stats: EpochStats) -> None:
        pass

    def on_train_end(self) -> None:
        pass

    def seconds_per_step(self) -> float:
        intervals = np.diff(self.stamps)[WARMUP_STEPS:]
        return float(statistics.median(intervals))


@dataclass(frozen=True)
class Timing:
    """Measured speed of one model at its configured training batch on one device."""

    batch: int  # configured training batch
    timed_batch: int  # batch actually timed (smaller on CPU for large models)
    step_seconds: float  # one optimiser step at ``batch`` (scaled per sample from ``timed_batch``)
    forward_seconds_per_sample: float  # eval-mode forward pass (val and test passes, teacher logits)

    @property
    def scaled(self) -> bool:
        return self.timed_batch < self.batch


def timed_batch(macs: int, batch: int, device: torch.device, forward_only: bool = False) -> int:
    """The batch to time: the configured one on a GPU, a smaller one on CPU when the model is large."""
    if device.type == "cuda":
        return batch
    cap = CPU_STEP_MACS * (3 if forward_only else 1)
    return max(2, min(batch, int(cap // max(macs, 1))))


def time_training(
    model: nn.Module,
    info: DatasetInfo,
    loss_for: Callable[[TensorSplit], LossFn],
    config: TrainConfig,
    macs: int,
    device: torch.device,
) -> Timing:
    """Time a few real steps of the project's trainer on synthetic batches, and one eval-mode forward pass.

    ``loss_for(split)`` gives the loss function for the synthetic training split (it may index teacher logits).
    """
    batch = timed_batch(macs, config.batch_size, device)
    steps = WARMUP_STEPS + TIMED_STEPS
    split = synthetic_split(info, batch * steps)
    clock = _StepClock()
    short = replace(config, epochs=1, batch_size=batch, max_steps=steps)
    fit(model, split, None, loss_for(split), short, device, (clock,))
    step_seconds = clock.seconds_per_step() * config.batch_size / batch

    eval_batch = timed_batch(macs, EVAL_BATCH, device, forward_only=True)
    held = synthetic_split(info, eval_batch, seed=1)
    evaluate_accuracy(model, held, device, eval_batch)  # warm-up
    started = time.perf_counter()
    evaluate_accuracy(model, held, device, eval_batch)
    forward = (time.perf_counter() - started) / eval_batch
    return Timing(config.batch_size, batch, step_seconds, forward)


# --- the dry run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentEstimate:
    """One random candidate: its size, build time, speed and the cost of evaluating it."""

    params: int
    macs: int
    removed: int  # units removed, of the space's removable ones
    build_seconds: float
    timing: Timing
    candidate_seconds: float  # one evaluation: build + distillation for the per-candidate budget + one val pass


@dataclass(frozen=True)
class DryRun:
    """What the dry run built, measured and estimated."""

    config: PaperConfig
    device: str
    device_note: str
    threads: int
    data: DataShape
    space: CompressionSpace
    max_compression: float
    teacher_params: int
    teacher_macs: int
    teacher_timing: Timing
    students: list[StudentEstimate]
    candidate_steps: int  # optimiser steps per candidate evaluation
    teacher_seconds: float  # teacher training (all epochs, val each epoch, one test pass)
    logits_seconds: float  # the teacher's logits over the training split, once
    candidate_seconds: float  # mean over the random students
    teacher_sized_seconds: float  # a candidate with the teacher's architecture (stage-1 N2N rollouts keep its widths)
    search_seconds: float
    teacher_sized_search_seconds: float
    final_seconds: float  # final distillation of the chosen student, val + test pass

    @property
    def total_seconds(self) -> float:
        return self.teacher_seconds + self.logits_seconds + self.search_seconds + self.final_seconds

    @property
    def teacher_sized_total_seconds(self) -> float:
        return self.teacher_seconds + self.logits_seconds + self.teacher_sized_search_seconds + self.final_seconds


def pick_device(requested: str) -> tuple[torch.device, str]:
    """The device to time on: CUDA when asked for and present, otherwise CPU, with a note saying which."""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu"), f"cpu (asked for {requested}, but torch sees no CUDA GPU: timings are CPU timings)"
    device = resolve_device(requested)
    if device.type == "cuda":
        return device, f"{device} ({torch.cuda.get_device_name(device)})"
    return device, "cpu (no GPU in use: timings are CPU timings)"


def dry_run(
    config: PaperConfig, data_root: Path | None = None, device: str | None = None, students: int = STUDENTS
) -> DryRun:
    """Build everything that needs neither the data nor a trained teacher, time a few steps, estimate the run."""
    teacher, compress = config.teacher, config.compress
    torch_device, device_note = pick_device(device or teacher.device)
    options = replace(compress.data, data_root=data_root)
    data = describe_data(teacher.dataset, options)
    info = data.info

    seed_everything(teacher.train.seed)
    model = create_model(teacher.model, info.input_shape, info.num_classes, teacher.model_kwargs)
    check_model_io(model, teacher.model, info.input_shape, info.num_classes)
    space = compress.space.space_of(model, info.input_shape)
    max_compression = space.max_compression()
    if compress.target is not None and max_compression < compress.target:
        raise ArchcompressError(
            f"config {config.path}: target {compress.target:g}x is out of reach: this space compresses at most "
            f"{max_compression:.1f}x (lower target or widen space.ratios / space.min_channels)"
        )
    method = get_method(compress.method)
    if method.searches:  # the method's own checks (e.g. a --policy file); its search needs only the space
        cost = space.teacher_cost
        stand_in = MethodContext(
            compress, SimpleNamespace(space=space), None, TeacherStats(0.5, cost.params, cost.macs)
        )  # type: ignore[arg-type]
        method(stand_in).make_search()

    # Candidates are built before the teacher trains: inheriting from a random teacher costs the same.
    budget = compress.candidate
    rng = np.random.default_rng(compress.seed)
    candidates = [space.sample(rng) for _ in range(students)]
    builds = []
    for candidate in candidates:
        started = time.perf_counter()
        built = space.build(candidate, inherit=budget.init == "inherit")
        builds.append((built, time.perf_counter() - started))

    cost = space.teacher_cost
    teacher_timing = time_training(model, info, lambda _: cross_entropy, teacher.train, cost.macs, torch_device)
    model.eval()

    def student_loss(split: TensorSplit) -> LossFn:
        # augmented inputs need the teacher on every batch; otherwise (N, K) logits stand in for the logit cache
        targets: TeacherTargets = (
            LiveTeacher(model) if budget.augment else CachedLogits(torch.randn(len(split), info.num_classes))
        )
        return budget.loss_fn(targets)

    train_samples = min(budget.subset, data.train) if budget.subset else data.train
    candidate_steps = budget.epochs * math.ceil(train_samples / budget.batch_size)
    if budget.max_steps is not None:
        candidate_steps = min(candidate_steps, budget.max_steps)
    estimates = []
    for (built, build_seconds), candidate in zip(builds, candidates, strict=True):
        timing = time_training(built.module, info, student_loss, budget.train_config(compress.seed), built.macs,
                               torch_device)  # fmt: skip
        seconds = build_seconds + candidate_steps * timing.step_seconds + data.val * timing.forward_seconds_per_sample
        removed = sum(1 for keep in candidate.keep if not keep)
        estimates.append(StudentEstimate(built.params, built.macs, removed, build_seconds, timing, seconds))

    # A teacher-sized candidate: the teacher's per-sample training time at the candidate batch. Not an upper bound:
    # a student has at most the teacher's params, but removing a max-pool can give it more MACs.
    teacher_per_sample = teacher_timing.step_seconds / teacher_timing.batch
    teacher_sized = (
        candidate_steps * teacher_per_sample * budget.batch_size + data.val * teacher_timing.forward_seconds_per_sample
    )
    epochs = teacher.train.epochs
    teacher_steps = epochs * math.ceil(data.train / teacher.train.batch_size)
    teacher_seconds = (
        teacher_steps * teacher_timing.step_seconds
        + (epochs * data.val + data.test) * teacher_timing.forward_seconds_per_sample
    )
    mean_candidate = statistics.fmean(s.candidate_seconds for s in estimates)
    mean_step = statistics.fmean(s.timing.step_seconds for s in estimates)
    mean_forward = statistics.fmean(s.timing.forward_seconds_per_sample for s in estimates)
    final_steps = compress.final_epochs * math.ceil(data.train / budget.batch_size)
    final_seconds = final_steps * mean_step + (data.val + data.test) * mean_forward
    return DryRun(
        config=config,
        device=str(torch_device),
        device_note=device_note,
        threads=torch.get_num_threads(),
        data=data,
        space=space,
        max_compression=max_compression,
        teacher_params=cost.params,
        teacher_macs=cost.macs,
        teacher_timing=teacher_timing,
        students=estimates,
        candidate_steps=candidate_steps,
        teacher_seconds=teacher_seconds,
        logits_seconds=data.train * teacher_timing.forward_seconds_per_sample,
        candidate_seconds=mean_candidate,
        teacher_sized_seconds=teacher_sized,
        search_seconds=compress.budget * mean_candidate,
        teacher_sized_search_seconds=compress.budget * teacher_sized,
        final_seconds=final_seconds,
    )


def duration(seconds: float) -> str:
    """Seconds in the largest unit that keeps the number readable (``42 s``, ``3.5 min``, ``7.2 h``, ``2.1 d``)."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def format_dry_run(run: DryRun) -> str:
    """The dry run's report: what was built, the timing table and the estimates."""
    config, teacher, compress = run.config, run.config.teacher, run.config.compress
    budget, data = compress.candidate, run.data
    shape = "x".join(map(str, data.info.input_shape))
    approx = "" if data.real else "~"
    lines = [
        f"config   {config.path}: valid (CompressConfig.validate() and the {compress.method} search's own checks)",
        f"teacher  {teacher.model}{f' {teacher.model_kwargs}' if teacher.model_kwargs else ''} on "
        f"{teacher.dataset}, random init: {run.teacher_params:,} params, {_count(run.teacher_macs)} MACs",
        f"data     {data.info.name}: {shape}, {data.info.num_classes} classes; train {approx}{data.train:,} / "
        f"val {approx}{data.val:,} / test {data.test:,}",
        f"         {data.note}",
        "         timing used synthetic batches of this shape (speed does not depend on pixel values)",
        f"space    {len(run.space.units)} units, {len(run.space.removable_units)} removable, "
        f"{len(run.space.shrink_groups)} shrink groups, {len(run.space.ratios)} ratios; "
        f"at most {run.max_compression:.0f}x fewer params",
        f"device   {run.device_note}; {run.threads} CPU thread(s)",
        "timing   the project's trainer (archcompress.distill.fit: the config's optimiser, loss and augmentation;",
        f"         AMP and channels_last on CUDA), {WARMUP_STEPS} warm-up + {TIMED_STEPS} timed steps per model; "
        "val/test passes timed as one eval-mode forward",
        "",
        f"{'model':<18} {'params':>12} {'MACs':>8} {'ratio':>7} {'removed':>8} {'batch (timed)':>14} "
        f"{'s/step':>9} {'per evaluation':>15}",
    ]
    t = run.teacher_timing
    mark = "*" if t.scaled else " "
    lines.append(
        f"{'teacher (train)':<18} {run.teacher_params:>12,} {_count(run.teacher_macs):>8} {'1.0x':>7} {'-':>8} "
        f"{f'{t.batch} ({t.timed_batch})':>14} {t.step_seconds:>8.4f}{mark} {'-':>15}"
    )
    removable = len(run.space.removable_units)
    for index, student in enumerate(run.students, 1):
        s = student.timing
        mark = "*" if s.scaled else " "
        ratio = f"{run.teacher_params / student.params:.1f}x"
        lines.append(
            f"{f'random student {index}':<18} {student.params:>12,} {_count(student.macs):>8} {ratio:>7} "
            f"{f'{student.removed}/{removable}':>8} {f'{s.batch} ({s.timed_batch})':>14} {s.step_seconds:>8.4f}{mark} "
            f"{duration(student.candidate_seconds):>15}"
        )
    if t.scaled or any(s.timing.scaled for s in run.students):
        lines.append(
            "* timed at the smaller batch in brackets and scaled per sample to the configured batch (CPU only)"
        )
    epochs, tb = teacher.train.epochs, teacher.train.batch_size
    steps_per_epoch = math.ceil(data.train / tb)
    lines += [
        "",
        f"estimate on {run.device} at the configured batch sizes ({'real' if data.real else 'official'} split sizes)",
        f"  teacher training   {epochs} epochs x {steps_per_epoch:,} steps x {t.step_seconds:.3g} s + val each epoch "
        f"+ test = {duration(run.teacher_seconds)}",
        f"  teacher logits     one pass over {data.train:,} training samples = {duration(run.logits_seconds)}",
        f"  per candidate      {run.candidate_steps:,} steps ({budget.epochs} epochs x batch {budget.batch_size}"
        f"{f', max {budget.max_steps}' if budget.max_steps else ''}) + build + one val pass = "
        f"{duration(run.candidate_seconds)} (mean of {len(run.students)} random students), "
        f"{duration(run.teacher_sized_seconds)} (teacher-sized)",
        f"  search             {compress.budget} evaluations x per candidate = {duration(run.search_seconds)} "
        f"(random-student mean), {duration(run.teacher_sized_search_seconds)} (teacher-sized); "
        f"{compress.executor} executor, {compress.workers} worker(s)",
        f"  final distillation {compress.final_epochs} epochs x {math.ceil(data.train / budget.batch_size):,} steps "
        f"of a random-student-sized model + val + test = {duration(run.final_seconds)}",
        f"  total              {duration(run.total_seconds)} (random-student mean), "
        f"{duration(run.teacher_sized_total_seconds)} (teacher-sized candidates)",
    ]
    if run.device == "cpu" and teacher.device.startswith("cuda"):
        lines.append(f"  (CPU timings: run the dry run on a machine with {teacher.device} for the numbers that matter)")
    return "\n".join(lines)


# --- the real run ------------------------------------------------------------------------------------------


class _EpochPrinter:
    """Prints one line per teacher epoch (plain text, so that logs of long runs stay readable)."""

    def on_train_start(self, total_steps: int, epochs: int) -> None:
        print(f"teacher: {epochs} epochs, {total_steps:,} steps", flush=True)

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        pass

    def on_epoch_end(self, stats: EpochStats) -> None:
        val = f"{stats.val_accuracy:.2%}" if stats.val_accuracy is not None else "-"
        print(f"  epoch {stats.epoch}: loss {stats.train_loss:.4f}, train {stats.train_accuracy:.2%}, val {val}, "
              f"{stats.seconds:.0f} s", flush=True)  # fmt: skip

    def on_train_end(self) -> None:
        pass


@contextmanager
def echo_library_log() -> Iterator[None]:
    """Also print the library's run log (what goes to RUN/log.txt) on stdout, while in the ``with`` block."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("archcompress")
    logger.addHandler(handler)
    try:
        yield
    finally:  # a caller's stdout (a test's capture, say) may be closed once main() returns
        logger.removeHandler(handler)


def default_out(config: PaperConfig) -> Path:
    """``runs/paper/DATASET-MODEL``: configs with the same teacher share its checkpoint."""
    model = config.teacher.model.replace(":", "-").replace("/", "-")
    return Path("runs") / "paper" / f"{config.teacher.dataset}-{model}"


def check_existing_teacher(path: Path, teacher: TeacherSpec) -> None:
    """Refuse a checkpoint that was trained from another teacher section."""
    meta, _ = read_checkpoint(path)
    wanted = (teacher.model, teacher.model_kwargs, teacher.dataset)
    found = (meta.model, meta.model_kwargs, meta.dataset)
    if found != wanted or meta.epochs != teacher.train.epochs:
        raise ArchcompressError(
            f"{path} holds {meta.model} {meta.model_kwargs} on {meta.dataset} ({meta.epochs} epochs), not this "
            f"config's teacher ({teacher.model} {teacher.model_kwargs} on {teacher.dataset}, {teacher.train.epochs} "
            "epochs): choose another --out"
        )


def run(
    config: PaperConfig, data_root: Path | None, out: Path, device: str | None = None, download: bool = False
) -> None:
    """Train the teacher (unless ``out/teacher.pt`` exists), then run the compression into ``out/METHOD``."""
    teacher, compress = config.teacher, config.compress
    data = replace(compress.data, data_root=data_root, download=download)
    teacher_path = out / "teacher.pt"
    if teacher_path.exists():
        check_existing_teacher(teacher_path, teacher)  # before anything in ``out`` is written
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.path, out / f"paper-{compress.method}.yaml")
    if teacher_path.exists():
        print(f"teacher: {teacher_path} exists, not training it again")
    else:
        print(f"training {teacher.model} on {teacher.dataset} into {teacher_path}", flush=True)
        trained = train_teacher(
            teacher.model, teacher.dataset, teacher_path, model_kwargs=teacher.model_kwargs, data=data,
            train=teacher.train, device=device or teacher.device, callbacks=(_EpochPrinter(),),
        )  # fmt: skip
        print(f"teacher: test accuracy {trained.meta.test_accuracy:.2%}, {trained.meta.params:,} params, "
              f"{duration(trained.seconds)}", flush=True)  # fmt: skip
    meta = load_teacher(teacher_path).meta
    run_dir = out / compress.method
    if (run_dir / "report.json").exists():
        print(f"compression: {run_dir} is finished already (report.json); choose another --out to run it again")
        return
    settings = replace(
        compress, teacher=str(teacher_path), out=str(run_dir), data=data, device=device or compress.device
    )
    settings.validate()

    def progress(status: Any) -> None:
        best = status.best
        text = "no student trained yet"
        if best is not None and best.params:
            text = (f"best reward {status.best_reward:.3f}, val {best.val_accuracy:.2%}, "
                    f"{status.teacher_params / best.params:.1f}x fewer params")  # fmt: skip
        print(f"[{status.done}/{settings.budget}] {text}", flush=True)

    resume = run_dir.exists()
    print(f"{'resuming' if resume else 'starting'} {compress.method} compression in {run_dir}", flush=True)
    with echo_library_log():
        result = run_compression(settings, resume=resume, on_progress=progress)
    student = result.report["student"]
    print(
        f"student: test accuracy {student['test_accuracy']:.2%} (teacher {meta.test_accuracy:.2%}), "
        f"{student['params']:,} params, {result.report['compression']['params']:.1f}x fewer; report in {run_dir}"
    )


# --- command line ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or dry-run) one config; bad input prints one line and returns 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("config", type=Path, help="a configs/*.yaml file")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the torchvision data set")
    parser.add_argument("--download", action="store_true", help="download the data set into --data-root if missing")
    parser.add_argument("--out", type=Path, default=None, help="output folder [default: runs/paper/DATASET-MODEL]")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N [default: the config's]")
    parser.add_argument("--dry-run", action="store_true", help="check, time a few steps and estimate; no data needed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: torch's]")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = load_config(args.config)
        if args.dry_run:
            print(format_dry_run(dry_run(config, args.data_root, args.device)))
        else:
            run(config, args.data_root, args.out or default_out(config), args.device, args.download)
    except ArchcompressError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
