"""The orchestration entry points behind the CLI; each command is one call here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archcompress import __version__
from archcompress.checkpoint import TeacherMeta, save_teacher
from archcompress.data import DataOptions, load_dataset
from archcompress.distill import Callback, TrainConfig, TrainHistory, cross_entropy, evaluate_accuracy, fit
from archcompress.errors import ArchcompressError
from archcompress.models import check_model_io, create_model
from archcompress.runtime import resolve_device, seed_everything


@dataclass(frozen=True)
class TeacherTrainingResult:
    """Outcome of ``train_teacher``: where the checkpoint is and how well the teacher does."""

    path: Path
    meta: TeacherMeta
    history: TrainHistory
    seconds: float


def train_teacher(
    model: str,
    dataset: str,
    out: str | Path,
    *,
    model_kwargs: dict[str, Any] | None = None,
    data: DataOptions | None = None,
    train: TrainConfig | None = None,
    device: str = "auto",
    overwrite: bool = False,
    callbacks: tuple[Callback, ...] = (),
) -> TeacherTrainingResult:
    """Train a teacher from scratch on ``dataset`` and save a checkpoint that rebuilds it."""
    import torch

    started = time.perf_counter()
    out = Path(out)
    train = train or TrainConfig()
    train.validate()
    if out.exists() and not overwrite:
        raise ArchcompressError(f"{out} already exists: choose another --out or pass --overwrite to replace it")
    if out.is_dir():
        raise ArchcompressError(f"--out {out} is a directory: give a file path such as {out / 'teacher.pt'}")
    torch_device = resolve_device(device)
    splits = load_dataset(dataset, data or DataOptions())
    info = splits.info
    seed_everything(train.seed)
    net = create_model(model, info.input_shape, info.num_classes, model_kwargs)
    check_model_io(net, model, info.input_shape, info.num_classes)
    history = fit(net, splits.train, splits.val, cross_entropy, train, torch_device, callbacks)
    test_accuracy = evaluate_accuracy(net, splits.test, torch_device)
    meta = TeacherMeta(
        model=model,
        model_kwargs=dict(model_kwargs or {}),
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        dataset=dataset,
        val_accuracy=history.final.val_accuracy,
        test_accuracy=test_accuracy,
        params=sum(p.numel() for p in net.parameters()),
        epochs=len(history.epochs),
        seed=train.seed,
        library_version=__version__,
        torch_version=str(torch.__version__),
    )
    save_teacher(out, net.cpu(), meta)
    return TeacherTrainingResult(out, meta, history, time.perf_counter() - started)
