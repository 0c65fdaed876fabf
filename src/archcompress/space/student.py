"""Save and load students as ``arch.json`` (the IR) + ``model.pt`` (the state dict), no teacher code needed."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archcompress.errors import ArchcompressError, first_line
from archcompress.runtime import atomic_open, atomic_write_text
from archcompress.space.build import BuildResult, Student, empty_student
from archcompress.space.cost import count_params
from archcompress.space.ir import StudentArch

FORMAT = "archcompress-student"
FORMAT_VERSION = 1
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.pt"


def save_student(
    student: Student | BuildResult, directory: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``directory/model.pt`` then ``directory/arch.json``, each atomically; returns the directory.

    ``arch.json`` records the SHA-256 of ``model.pt``, so a reader never pairs an architecture with weights
    from another save. ``metadata`` (JSON-able) is stored alongside, e.g. the candidate or the accuracy.
    """
    module = student.module if isinstance(student, BuildResult) else student
    if not isinstance(module, Student):
        raise ArchcompressError(
            f"cannot save a {type(module).__name__} as a student: only modules built by "
            "CompressionSpace.build or load_student carry the architecture needed to rebuild them"
        )
    extra = dict(metadata or {})
    if isinstance(student, BuildResult):
        extra.setdefault("candidate", student.candidate.to_dict())
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    weights = buffer.getvalue()
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": module.arch.to_dict(),
        "weights": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "params": count_params(module),
        "metadata": extra,
    }
    text = json.dumps(document, indent=1)  # fails here, before anything is written, if metadata is not JSON-able
    target = Path(directory)
    with atomic_open(target / WEIGHTS_FILE, "wb") as handle:
        handle.write(weights)
    atomic_write_text(target / ARCH_FILE, text + "\n")
    return target


def read_student_arch(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``arch.json`` of a saved student (architecture, weight hash, params, metadata)."""
    path = Path(directory) / ARCH_FILE
    if not path.is_file():
        raise ArchcompressError(f"{path} does not exist: pass a directory written by save_student")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8 at all
        raise ArchcompressError(f"cannot read {path} ({exc}): re-save the student") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArchcompressError(f"{path} is not an archcompress student architecture file")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArchcompressError(
            f"{path} has format version {document.get('format_version')!r}; this archcompress reads "
            f"version {FORMAT_VERSION}"
        )
    return document


def load_student(directory: str | os.PathLike[str]) -> Student:
    """Rebuild a saved student from ``arch.json`` and ``model.pt`` alone; returned in eval mode on CPU."""
    document = read_student_arch(directory)
    try:
        arch = StudentArch.from_dict(document["arch"])
        weights_path = Path(directory) / document.get("weights", WEIGHTS_FILE)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ArchcompressError(f"{Path(directory) / ARCH_FILE} is damaged ({exc!r}): re-save the student") from exc
    try:
        weights = weights_path.read_bytes()
    except OSError as exc:
        raise ArchcompressError(f"cannot read the student's weights {weights_path} ({exc})") from exc
    if hashlib.sha256(weights).hexdigest() != document.get("weights_sha256"):
        raise ArchcompressError(
            f"{weights_path} does not match {ARCH_FILE} (its SHA-256 differs): the save was interrupted or the "
            "files come from different saves; save the student again"
        )
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # refused pickled code (UnpicklingError), or damaged bytes: almost any type
        raise ArchcompressError(
            f"cannot load {weights_path} ({first_line(exc)}): only plain weights are read, never pickled code; "
            "save the student again"
        ) from exc
    try:
        student = empty_student(arch)
        student.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ArchcompressError(f"the weights in {weights_path} do not fit its architecture: {exc}") from exc
    return student.eval()
