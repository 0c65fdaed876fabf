"""Where a student's targets come from: teacher logits cached once on disk, or the teacher run live.

With augmentation off, every epoch sees the same inputs, so the teacher's logits for the training set are
computed once (keyed by teacher checkpoint hash and data split) and looked up by ``Batch.sample_index``:
candidate training never runs the teacher. With augmentation on, each batch is a new view of the data and
the teacher must run on it (costing one teacher forward pass per step).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from archcompress.data import Batch, Split
from archcompress.distill.trainer import predict_logits
from archcompress.runtime import atomic_open


class CachedLogits:
    """Teacher logits for a whole split, indexed by the batch's sample positions."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits  # (N, K) float32, CPU

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.logits[batch.sample_index].to(batch.x.device, non_blocking=True)


class LiveTeacher:
    """Run the (frozen, eval-mode) teacher on every batch; needed when inputs are augmented."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher.eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def __call__(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(batch.x)


def split_key(teacher_sha256: str, dataset: str, split: Split, extra: dict[str, object]) -> str:
    """A short key that changes whenever the teacher, the data set or the split changes."""
    payload = json.dumps(
        {"teacher": teacher_sha256, "dataset": dataset, "n": len(split), **extra}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def cached_teacher_logits(
    teacher: nn.Module, split: Split, cache_dir: Path, key: str, device: torch.device
) -> torch.Tensor:
    """Teacher logits for ``split`` (un-augmented, index order), computed once and then read from disk."""
    path = Path(cache_dir) / f"logits-{key}.pt"
    if path.is_file():
        try:
            logits = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(logits, torch.Tensor) and logits.dim() == 2 and len(logits) == len(split):
                return logits
        except Exception:
            pass
    teacher.to(device)
    logits = predict_logits(teacher, split, device)
    with atomic_open(path, "wb") as handle:
        torch.save(logits, handle)
    return logits
