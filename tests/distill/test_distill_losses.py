"""Distillation losses and teacher-logit sources."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archcompress.data import Batch, DatasetInfo, TensorSplit
from archcompress.distill import (
    CachedLogits,
    LiveTeacher,
    cached_teacher_logits,
    hinton_kd_loss,
    l2_logit_loss,
    make_distill_loss,
    split_key,
)


def _batch(n: int = 4, k: int = 3) -> Batch:
    return Batch(torch.randn(n, 1, 2, 2), torch.arange(n) % k, torch.arange(n))


def test_l2_is_mean_over_batch_of_squared_distance() -> None:
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # sample 1: 1 + 4 = 5, sample 2: 9 + 16 = 25 -> mean 15
    assert l2_logit_loss(student, teacher).item() == pytest.approx(15.0)
    assert l2_logit_loss(teacher, teacher).item() == 0.0


def test_kd_matches_definition_and_limits() -> None:
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    temperature, alpha = 3.0, 0.7
    p_t = F.softmax(teacher / temperature, 1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / temperature, 1))).sum(1).mean()
    expected = alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student, labels)
    assert hinton_kd_loss(student, teacher, labels, temperature, alpha).item() == pytest.approx(expected.item(), 1e-5)
    # alpha = 0 is plain cross-entropy; identical logits leave only the hard-label part
    assert hinton_kd_loss(student, teacher, labels, temperature, 0.0).item() == pytest.approx(
        F.cross_entropy(student, labels).item(), 1e-6
    )
    assert hinton_kd_loss(teacher, teacher, labels, temperature, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_make_distill_loss_uses_targets_and_hard_weight() -> None:
    batch = _batch()
    logits = torch.randn(4, 3)
    teacher = torch.randn(4, 3)
    l2 = make_distill_loss("l2", lambda b: teacher)
    assert l2(logits, batch).item() == pytest.approx(l2_logit_loss(logits, teacher).item())
    with_hard = make_distill_loss("l2", lambda b: teacher, hard_weight=0.5)
    expected = l2_logit_loss(logits, teacher) + 0.5 * F.cross_entropy(logits, batch.y)
    assert with_hard(logits, batch).item() == pytest.approx(expected.item(), 1e-6)
    kd = make_distill_loss("kd", lambda b: teacher, temperature=2.0, alpha=0.5)
    assert kd(logits, batch).item() == pytest.approx(hinton_kd_loss(logits, teacher, batch.y, 2.0, 0.5).item())
    with pytest.raises(ValueError, match="l2 or kd"):
        make_distill_loss("mse", lambda b: teacher)  # type: ignore[arg-type]


def test_cached_logits_follow_sample_index_and_live_teacher_is_frozen() -> None:
    table = torch.arange(12, dtype=torch.float32).view(6, 2)
    batch = Batch(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([5, 0, 2]))
    assert torch.equal(CachedLogits(table)(batch), table[[5, 0, 2]])
    net = nn.Linear(2, 2)
    live = LiveTeacher(net)
    out = live(Batch(torch.ones(3, 2), torch.zeros(3, dtype=torch.long), torch.arange(3)))
    assert not out.requires_grad and not net.training
    assert torch.allclose(out, net(torch.ones(3, 2)))


def test_logit_cache_is_computed_once_and_reused(tmp_path: Path) -> None:
    info = DatasetInfo("toy", (1, 2, 2), 3, (0.0,), (1.0,))
    split = TensorSplit(info, torch.randn(10, 1, 2, 2), torch.arange(10) % 3, scale=1.0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    key = split_key("abc", "toy", split, {"val_fraction": 0.1})
    first = cached_teacher_logits(teacher, split, tmp_path, key, torch.device("cpu"))
    assert first.shape == (10, 3) and calls
    calls.clear()
    second = cached_teacher_logits(teacher, split, tmp_path, key, torch.device("cpu"))
    assert not calls, "a cache hit must not run the teacher"
    assert torch.equal(first, second)
    assert torch.allclose(first, teacher(split.raw.float()), atol=1e-6)
    # another teacher hash is another key; a damaged cache file is recomputed, not trusted
    assert split_key("abd", "toy", split, {"val_fraction": 0.1}) != key
    (tmp_path / f"logits-{key}.pt").write_bytes(b"garbage")
    third = cached_teacher_logits(teacher, split, tmp_path, key, torch.device("cpu"))
    assert calls and torch.equal(third, first)
    assert not math.isnan(third.sum().item())
