"""The orchestration entry points behind the CLI; each command is one call here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from archcompress.checkpoint import TeacherMeta, load_teacher, save_teacher
from archcompress.data import DataOptions, load_dataset, split_options, with_recorded_splits
from archcompress.distill import Callback, TrainConfig, TrainHistory, cross_entropy, evaluate_accuracy, fit
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Budget, EvalContext, Evaluator, Result, ResultStore, make_executor, worker_state
from archcompress.models import check_model_io, create_model, reference_kind
from archcompress.pipeline import CompressionResult, SearchStatus, run_compression
from archcompress.pipeline.settings import resolve_settings
from archcompress.runtime import cache_home, resolve_device, seed_everything
from archcompress.space import Candidate, CompressionSpace
from archcompress.version import __version__

log = logging.getLogger("archcompress")


def load_model_or_checkpoint(
    ref: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, tuple[int, ...], int]:
    """A model from a checkpoint file (which knows its shape) or a model reference plus ``input_shape``."""
    path = Path(ref)
    if path.is_file() and reference_kind(ref) == "zoo":
        teacher = load_teacher(path)
        return teacher.model, teacher.meta.input_shape, teacher.meta.num_classes
    # A missing path with a checkpoint's suffix or a folder in it is a missing file, not an unknown model name.
    looks_like_a_file = path.suffix.lower() in (".pt", ".pth", ".ckpt", ".tar", ".bin") or "/" in ref or "\\" in ref
    if reference_kind(ref) == "zoo" and looks_like_a_file:
        if path.is_dir():
            raise ArchcompressError(f"{ref} is a directory, not a checkpoint file: give the .pt file in it")
        raise ArchcompressError(
            f"checkpoint file {ref} does not exist: check the path, or write one with "
            "`archcompress train-teacher --out FILE.pt`"
        )
    if input_shape is None:
        raise ArchcompressError(
            f"{ref!r} is a model reference, not a checkpoint file: pass --input-shape C,H,W (e.g. 3,32,32), "
            "or give a checkpoint written by train-teacher"
        )
    classes = num_classes or 10
    model = create_model(ref, input_shape, classes, model_kwargs)
    check_model_io(model, ref, input_shape, classes)
    return model.eval(), input_shape, classes


def inspect_model(
    ref: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The compression space's unit table and totals for a checkpoint or a model reference."""
    model, shape, _ = load_model_or_checkpoint(ref, input_shape, num_classes, model_kwargs)
    return CompressionSpace.from_model(model, shape).summary()


def compress(
    teacher: str | Path | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    config: str | Path | None = None,
    on_progress: Callable[[SearchStatus], None] | None = None,
    labels: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    **options: Any,
) -> CompressionResult:
    """Search ``teacher``'s space for a smaller student, distil it, test it once; write the run directory ``out``.

    ``options`` are settings of :class:`archcompress.config.CompressConfig` (``method``, ``budget``, ``target``,
    ``max_macs``, ``preset``, ``candidate=Budget(...)``, ``space=SpaceOptions(...)``, ...) or a method's options
    by its name (``n2n=N2NOptions(...)``); ``settings`` takes them by path (``{"candidate.epochs": 3}``).
    Unset ones come from ``preset`` (``fast`` or ``paper``). ``config``: repeat a run from its
    ``config.yaml`` (``options`` override it, and say so); ``resume``: continue the run in ``out`` (options
    that would change its results are refused; a larger ``budget`` extends the search). ``on_progress`` is
    called after every evaluation with the search's status. The CLI's ``compress`` is this function.
    """
    changes = {**options, **(settings or {})}
    resolved, notes = resolve_settings(
        teacher=str(teacher) if teacher is not None else None, out=out, changes=changes, resume=resume,
        config_file=config, labels=labels,
    )  # fmt: skip
    for note in notes:
        log.warning("%s", note, extra={"console": True})
    return run_compression(resolved, resume=resume, on_progress=on_progress)


def evaluate_candidate(
    teacher: str | Path,
    candidate: str | Candidate,
    *,
    dataset: str | None = None,
    budget: Budget | None = None,
    data: DataOptions | None = None,
    store: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
) -> Result:
    """Distil one candidate (JSON text or ``Candidate``) from a teacher checkpoint and score it on val.

    The result goes to ``store`` (default: the shared store in the cache), so asking again costs nothing.
    """
    loaded = load_teacher(teacher)
    parsed = Candidate.from_json(candidate) if isinstance(candidate, str) else candidate
    budget = budget or Budget()
    budget.validate()
    context = EvalContext(
        teacher_path=str(Path(teacher).resolve()),
        teacher_sha256=loaded.sha256,
        dataset=dataset or loaded.meta.dataset,
        data=with_recorded_splits(data or DataOptions(), loaded.meta.extra.get("data")),
        budget=budget,
        device=device,
    )
    space = worker_state(context).space
    reason = space.check(parsed)
    if reason is not None:
        raise ArchcompressError(f"the candidate is not valid for this teacher: {reason}")
    results = ResultStore(Path(store) if store else cache_home() / "store.sqlite")
    return Evaluator(context, results, make_executor("inline"), seed=seed, method="evaluate").evaluate(parsed)


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
    """Train a teacher from scratch on ``dataset`` and save a checkpoint that rebuilds it.

    Logs a warning (shown by the CLI) before training when the compression space cannot take the model.
    """
    import logging

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
    data = data or DataOptions()
    splits = load_dataset(dataset, data)
    info = splits.info
    seed_everything(train.seed)
    net = create_model(model, info.input_shape, info.num_classes, model_kwargs)
    check_model_io(net, model, info.input_shape, info.num_classes)
    try:  # warn at once if `compress` will refuse this teacher: training may still be wanted
        with torch.random.fork_rng(devices=[]):  # tracing must not change the weights' or the batches' randomness
            CompressionSpace.from_model(net, info.input_shape)
    except ArchcompressError as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        logging.getLogger("archcompress").warning(
            "model %r: `compress` will refuse this teacher (%s); training it anyway: change the model first if "
            "you mean to compress it",
            model,
            reason,
            extra={"console": True},
        )
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
        extra={"data": split_options(data)},  # compress uses the same splits and image size
    )
    save_teacher(out, net.cpu(), meta)
    return TeacherTrainingResult(out, meta, history, time.perf_counter() - started)
