"""Training losses as pure functions; ``make_loss`` binds them to a source of teacher logits.

A ``LossFn`` maps (student logits, batch) to a scalar loss, so the one training loop serves teachers
(cross-entropy) and students (distillation) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from archcompress.data import Batch

LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]
TeacherTargets = Callable[[Batch], torch.Tensor]  # batch -> teacher logits (B, K)
DistillLoss = Literal["l2", "kd"]


def cross_entropy(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Plain cross-entropy against the hard labels (how teachers are trained)."""
    return F.cross_entropy(logits.float(), batch.y)


def l2_logit_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """N2N's loss: ``(1/N) sum_i ||f(x_i) - z_i||^2`` between student and teacher logits, (B, K) each."""
    return (student.float() - teacher.float()).pow(2).sum(dim=1).mean()


def hinton_kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """Hinton et al.: ``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels)``.

    The ``T^2`` factor keeps the soft-target gradients on the same scale as the hard-label ones.
    """
    log_p_student = F.log_softmax(student.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * temperature**2
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student.float(), labels)


def make_distill_loss(
    kind: DistillLoss,
    targets: TeacherTargets,
    *,
    hard_weight: float = 0.0,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> LossFn:
    """Bind a distillation loss to a source of teacher logits.

    ``l2`` optionally adds ``hard_weight * CE`` (the paper's hard-label term; the N2N code uses 0).
    """
    if kind == "l2":

        def l2(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
            loss = l2_logit_loss(logits, targets(batch))
            return loss + hard_weight * F.cross_entropy(logits.float(), batch.y) if hard_weight else loss

        return l2
    if kind == "kd":
        return lambda logits, batch: hinton_kd_loss(logits, targets(batch), batch.y, temperature, alpha)
    raise ValueError(f"unknown distillation loss {kind!r}: use l2 or kd")
