"""Training: loss functions and the one training loop shared by teachers and students."""

from archcompress.distill.losses import (
    DistillLoss,
    LossFn,
    TeacherTargets,
    cross_entropy,
    hinton_kd_loss,
    l2_logit_loss,
    make_distill_loss,
)
from archcompress.distill.teacher_targets import CachedLogits, LiveTeacher, cached_teacher_logits, split_key
from archcompress.distill.trainer import (
    Callback,
    EpochStats,
    ModelForwardError,
    TrainConfig,
    TrainHistory,
    TrainingDiverged,
    TrainState,
    evaluate_accuracy,
    fit,
    predict_logits,
)

__all__ = [
    "CachedLogits",
    "Callback",
    "DistillLoss",
    "EpochStats",
    "LiveTeacher",
    "LossFn",
    "ModelForwardError",
    "TeacherTargets",
    "TrainConfig",
    "TrainHistory",
    "TrainState",
    "TrainingDiverged",
    "cached_teacher_logits",
    "cross_entropy",
    "evaluate_accuracy",
    "fit",
    "hinton_kd_loss",
    "l2_logit_loss",
    "make_distill_loss",
    "predict_logits",
    "split_key",
]
