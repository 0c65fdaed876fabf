"""Teacher checkpoints: the model reference, its arguments, weights and metrics in one ``torch.save`` file.

Checkpoints are loaded with ``torch.load(weights_only=True)``, so a file that carries arbitrary pickled
code is refused instead of executed.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archcompress.errors import ArchcompressError, first_line
from archcompress.models import check_model_io, create_model
from archcompress.runtime import atomic_open

FORMAT = "archcompress-teacher"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TeacherMeta:
    """Everything needed to rebuild a teacher, plus what it scored."""

    model: str  # model reference: zoo name, torchvision:NAME, file.py:Factory or package.module:Factory
    model_kwargs: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    dataset: str
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    params: int = 0
    epochs: int = 0
    seed: int = 0
    library_version: str = ""
    torch_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher: the model (eval mode, CPU), its metadata and the checkpoint file's SHA-256."""

    model: nn.Module
    meta: TeacherMeta
    sha256: str
    path: Path


def save_teacher(path: str | Path, model: nn.Module, meta: TeacherMeta) -> None:
    """Write a teacher checkpoint atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": {**asdict(meta), "input_shape": list(meta.input_shape)},
        "state_dict": state,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _looks_like_torch_file(path: Path) -> bool:
    """True for a zip archive (``torch.save``'s format) or a binary pickle (legacy ``torch.save``)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK") or head.startswith(b"\x80")


def read_checkpoint(path: str | Path) -> tuple[TeacherMeta, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint file without building the model."""
    path = Path(path)
    if not path.is_file():
        raise ArchcompressError(f"checkpoint {path} does not exist: check the path or train one with train-teacher")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch_file(path):
            raise ArchcompressError(
                f"checkpoint {path} is not a PyTorch file (neither a zip archive nor a pickle): "
                "re-create it with `archcompress train-teacher`"
            ) from exc
        raise ArchcompressError(
            f"checkpoint {path} contains Python objects that are not plain weights; refusing to unpickle "
            "it (it could run code): save a state_dict-based archcompress checkpoint with train-teacher"
        ) from exc
    except Exception as exc:  # on damaged bytes torch's weights-only unpickler raises almost any type
        if not _looks_like_torch_file(path):  # e.g. a text file, whose bytes read as pickle opcodes: KeyError(101)
            raise ArchcompressError(
                f"checkpoint {path} is not a PyTorch file (neither a zip archive nor a pickle): "
                "re-create it with `archcompress train-teacher`"
            ) from exc
        raise ArchcompressError(
            f"checkpoint {path} is truncated or damaged (torch.load failed with {type(exc).__name__}: "
            f"{first_line(exc)}): re-create it with `archcompress train-teacher`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArchcompressError(
            f"{path} is a PyTorch file but not an archcompress teacher checkpoint (no {FORMAT!r} header): "
            "train the teacher with `archcompress train-teacher`, or wrap your model in a factory and pass "
            "it as file.py:Factory"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ArchcompressError(
            f"checkpoint {path} has format version {payload['format_version']}, newer than this archcompress "
            f"understands ({FORMAT_VERSION}): upgrade archcompress"
        )
    try:
        raw = dict(payload["meta"])
        known = set(TeacherMeta.__dataclass_fields__)
        meta = TeacherMeta(**{k: v for k, v in raw.items() if k in known})
        meta = TeacherMeta(**{**asdict(meta), "input_shape": tuple(int(d) for d in meta.input_shape)})
        state = payload["state_dict"]
        if not isinstance(state, dict):
            raise TypeError("state_dict is not a dict")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchcompressError(f"checkpoint {path} is damaged ({exc}): re-create it with train-teacher") from exc
    return meta, state


def load_teacher(path: str | Path) -> Teacher:
    """Rebuild a teacher from its checkpoint: model reference + arguments + state_dict."""
    path = Path(path)
    meta, state = read_checkpoint(path)
    model = create_model(meta.model, meta.input_shape, meta.num_classes, meta.model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ArchcompressError(
            f"checkpoint {path} does not match model {meta.model!r} {meta.model_kwargs} "
            f"({first_line(exc)}): the model code changed since it was saved; retrain the teacher"
        ) from exc
    model.eval()
    try:
        check_model_io(model, meta.model, meta.input_shape, meta.num_classes)
    except ArchcompressError as exc:
        raise ArchcompressError(f"checkpoint {path} is inconsistent: {exc}") from exc
    return Teacher(model, meta, file_sha256(path), path)
