"""Training: loss functions and the one training loop shared by teachers and students."""

from archcompress.distill.losses import LossFn, cross_entropy
from archcompress.distill.trainer import (
    Callback,
    EpochStats,
    TrainConfig,
    TrainHistory,
    TrainingDiverged,
    evaluate_accuracy,
    fit,
    predict_logits,
)

__all__ = [
    "Callback",
    "EpochStats",
    "LossFn",
    "TrainConfig",
    "TrainHistory",
    "TrainingDiverged",
    "cross_entropy",
    "evaluate_accuracy",
    "fit",
    "predict_logits",
]
