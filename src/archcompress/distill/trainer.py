"""One training loop for teachers and students: SGD/Adam, cosine/step schedule, AMP and channels_last on GPU."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from archcompress.data import Batch, Split
from archcompress.distill.losses import LossFn
from archcompress.errors import ArchcompressError, first_line

Optimizer = Literal["sgd", "adam"]
Schedule = Literal["cosine", "step", "none"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a model is trained; ``lr=None`` picks the optimiser's default."""

    epochs: int = 8
    batch_size: int = 128
    optimizer: Optimizer = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    augment: bool = True
    seed: int = 0
    max_steps: int | None = None  # stop early after this many optimiser steps (short evaluations)
    amp: bool = True  # mixed precision, used only on CUDA
    channels_last: bool = True  # NHWC memory layout for 2-D convnets, used only on CUDA

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.05 if self.optimizer == "sgd" else 1e-3

    def validate(self) -> None:
        """Reject settings that cannot train, with a message that names the flag."""
        if self.epochs < 1:
            raise ArchcompressError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ArchcompressError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ArchcompressError(f"--lr must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ArchcompressError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "none"):
            raise ArchcompressError(f"--schedule must be cosine, step or none, got {self.schedule!r}")


@dataclass(frozen=True)
class EpochStats:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    seconds: float


@dataclass(frozen=True)
class TrainState:
    """Where a training run stopped, to continue it later: epochs and optimiser steps done, and the optimiser's
    and the learning-rate schedule's state (the model's weights are saved with the model)."""

    epoch: int
    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


@dataclass
class TrainHistory:
    """Per-epoch metrics of one training run, and where it stopped."""

    epochs: list[EpochStats] = field(default_factory=list)
    state: TrainState | None = None

    @property
    def final(self) -> EpochStats:
        return self.epochs[-1]


class TrainingDiverged(ArchcompressError):
    """The loss became NaN or infinite; training stopped at once."""


class ModelForwardError(ArchcompressError):
    """The model's own forward raised while it was trained or evaluated (a bug or limit in the model's code)."""


def forward(model: nn.Module, x: torch.Tensor, during: str) -> torch.Tensor:
    """``model(x)``, with an exception from the model's forward turned into a one-line ``ModelForwardError``.

    Our own errors, out-of-memory errors and Ctrl-C pass through unchanged. ``during`` says when it happened
    (e.g. "training, epoch 1, step 3").
    """
    try:
        return model(x)
    except (ArchcompressError, MemoryError, torch.OutOfMemoryError):
        raise
    except Exception as exc:
        name = type(model).__name__
        raise ModelForwardError(
            f"the model's forward ({name}.forward) raised {type(exc).__name__} during {during} on a batch of shape "
            f"{tuple(x.shape)}: {first_line(exc)} -- fix {name}.forward (--debug shows the traceback)"
        ) from exc


class Callback(Protocol):
    """Hooks for progress display and logging; every method is optional in spirit but must exist."""

    def on_train_start(self, total_steps: int, epochs: int) -> None: ...

    def on_step(self, step: int, loss: float, accuracy: float) -> None: ...

    def on_epoch_end(self, stats: EpochStats) -> None: ...

    def on_train_end(self) -> None: ...


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or Adam; weight decay is not applied to biases and norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.learning_rate)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, nesterov=config.momentum > 0)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: cosine to zero, step decay x0.1 at 50% and 75%, or constant."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "step":
        milestones = [int(total_steps * 0.5), int(total_steps * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _uses_channels_last(model: nn.Module, device: torch.device, config: TrainConfig) -> bool:
    return config.channels_last and device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _autocast(device: torch.device, config: TrainConfig) -> torch.autocast | nullcontext[None]:
    if device.type == "cuda" and config.amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def fit(
    model: nn.Module,
    train: Split,
    val: Split | None,
    loss_fn: LossFn,
    config: TrainConfig,
    device: torch.device,
    callbacks: Sequence[Callback] = (),
    *,
    until_epoch: int | None = None,
    resume: TrainState | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``train`` and measure accuracy on ``val`` after every epoch.

    The learning-rate schedule always spans ``config.epochs``; ``until_epoch`` stops the run early (a snapshot of
    the long run, as multi-fidelity evaluation takes), and ``resume`` (the ``history.state`` of such a run, with
    the model holding its weights) continues it exactly where it stopped. Raises ``TrainingDiverged`` as soon as
    the loss is NaN or infinite.
    """
    config.validate()
    model.to(device)
    channels_last = _uses_channels_last(model, device, config)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    total_steps = max(1, math.ceil(len(train) / config.batch_size)) * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    loop = _StepLoop(model, loss_fn, config, device, channels_last, total_steps, callbacks)
    first = 0
    if resume is not None:
        loop.restore(resume)
        first = resume.epoch
    last = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    for callback in callbacks:
        callback.on_train_start(total_steps, config.epochs)
    history = TrainHistory()
    try:
        for epoch in range(first, last):
            started = time.perf_counter()
            batches = train.batches(
                config.batch_size,
                shuffle=True,
                augment=config.augment,
                seed=config.seed * 100_003 + epoch,
                device=device,
            )
            loss, accuracy = loop.run_epoch(batches, epoch)
            if val is not None or epoch + 1 == last or loop.step >= total_steps:  # before any evaluation
                recalibrate_slow_batchnorm(model, train, device, config, channels_last)
            val_accuracy = evaluate_accuracy(model, val, device, max(256, config.batch_size)) if val else None
            stats = EpochStats(epoch + 1, loss, accuracy, val_accuracy, time.perf_counter() - started)
            history.epochs.append(stats)
            for callback in callbacks:
                callback.on_epoch_end(stats)
            if loop.step >= total_steps:
                break
        history.state = loop.snapshot(history.epochs[-1].epoch if history.epochs else first)
    finally:
        # Also on divergence or Ctrl-C, so that callbacks can release what they hold (a live progress display).
        for callback in callbacks:
            callback.on_train_end()
    return history


# BatchNorm layers whose running statistics move slower than PyTorch's default (momentum 0.1) lag behind the
# weights in short training: torchvision's MobileNetV3 (0.01) and MNASNet (0.0003) then score chance in eval mode
# after a few epochs. Their statistics are recomputed over training batches (precise BatchNorm).
DEFAULT_BN_MOMENTUM = 0.1
RECALIBRATION_BATCHES = 200


def slow_batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics slower than the default momentum."""
    return [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.track_running_stats
        and (module.momentum is None or module.momentum < DEFAULT_BN_MOMENTUM)
    ]


@torch.no_grad()
def recalibrate_slow_batchnorm(
    model: nn.Module, train: Split, device: torch.device, config: TrainConfig, channels_last: bool = False
) -> int:
    """Recompute the running statistics of ``model``'s slow BatchNorm layers as exact averages over up to
    ``RECALIBRATION_BATCHES`` training batches (un-augmented, the rest of the model in eval mode); returns how many
    layers were recalibrated. Models without such layers are left untouched."""
    layers = slow_batchnorms(model)
    if not layers:
        return 0
    was_training = model.training
    model.eval()
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches below
        layer.train()
    try:
        batches = train.batches(config.batch_size, shuffle=True, seed=config.seed, device=device)
        for _, batch in zip(range(RECALIBRATION_BATCHES), batches, strict=False):
            x = batch.x
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, config):
                forward(model, x, "recalibrating BatchNorm statistics")
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
    return len(layers)


class _StepLoop:
    """Optimiser, schedule and loss scaling for one ``fit`` call; counts steps across epochs."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        config: TrainConfig,
        device: torch.device,
        channels_last: bool,
        total_steps: int,
        callbacks: Sequence[Callback],
    ) -> None:
        self.model, self.loss_fn, self.config, self.device = model, loss_fn, config, device
        self.channels_last = channels_last
        self.total_steps = total_steps
        self.callbacks = callbacks
        self.optimizer = make_optimizer(model, config)
        self.scheduler = make_scheduler(self.optimizer, config, total_steps)
        # fp16 needs loss scaling; bf16 (and CPU float32) does not.
        use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.step = 0

    def snapshot(self, epoch: int) -> TrainState:
        """The optimiser, schedule and step count after ``epoch`` epochs (references: save them before training on)."""
        return TrainState(epoch, self.step, self.optimizer.state_dict(), self.scheduler.state_dict())

    def restore(self, state: TrainState) -> None:
        """Continue from ``state`` (taken by ``snapshot`` of a run with the same config and model)."""
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.step = state.step

    def run_epoch(self, batches: Iterator[Batch], epoch: int) -> tuple[float, float]:
        """Train on ``batches`` until they run out or the step budget is spent; return (loss, accuracy)."""
        self.model.train()
        loss_sum = correct = seen = 0.0
        for batch in batches:
            x = batch.x
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(self.device, self.config):
                logits = forward(self.model, x, f"training (epoch {epoch + 1}, step {self.step + 1})")
                loss = self.loss_fn(logits, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, step {self.step + 1} (loss {loss.item()}): "
                    "lower --lr or check the data"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            count = len(batch.y)
            loss_sum += loss.item() * count
            correct += (logits.argmax(1) == batch.y).sum().item()
            seen += count
            for callback in self.callbacks:
                callback.on_step(self.step, loss_sum / seen, correct / seen)
            if self.step >= self.total_steps:
                break
        return loss_sum / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Logits for every sample of ``split`` in index order, without augmentation; (N, num_classes) on CPU."""
    model.eval()
    outputs = [
        forward(model, batch.x, "prediction").float().cpu() for batch in split.batches(batch_size, device=device)
    ]
    return torch.cat(outputs)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, split: Split, device: torch.device, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (eval mode, no augmentation)."""
    model.eval()
    correct = total = 0
    for batch in split.batches(batch_size, device=device):
        correct += int((forward(model, batch.x, "evaluation").argmax(1) == batch.y).sum())
        total += len(batch.y)
    return correct / max(total, 1)
