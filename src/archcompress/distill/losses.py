"""Training losses as pure functions of (logits, batch); distillation losses join them in [evaluate]."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from archcompress.data import Batch

LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]


def cross_entropy(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Plain cross-entropy against the hard labels (how teachers are trained)."""
    return F.cross_entropy(logits.float(), batch.y)
