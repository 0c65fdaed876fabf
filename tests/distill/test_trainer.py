"""The training loop: learning, early stop, determinism, divergence, optimisers, schedules and evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from archcompress.data import Batch, DatasetInfo, DataSplits, TensorSplit
from archcompress.distill import (
    EpochStats,
    ModelForwardError,
    TrainConfig,
    TrainingDiverged,
    cross_entropy,
    evaluate_accuracy,
    fit,
    predict_logits,
)
from archcompress.distill import trainer as trainer_module
from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.runtime import seed_everything

CPU = torch.device("cpu")


@dataclass
class Recorder:
    """A trainer callback that remembers every call."""

    starts: list[tuple[int, int]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    epochs: list[EpochStats] = field(default_factory=list)
    ends: int = 0

    def on_train_start(self, total_steps: int, epochs: int) -> None:
        self.starts.append((total_steps, epochs))

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        assert math.isfinite(loss) and 0.0 <= accuracy <= 1.0
        self.steps.append(step)

    def on_epoch_end(self, stats: EpochStats) -> None:
        self.epochs.append(stats)

    def on_train_end(self) -> None:
        self.ends += 1


def toy_split(count: int = 40, features: int = 4, classes: int = 3, seed: int = 0) -> TensorSplit:
    generator = torch.Generator().manual_seed(seed)
    info = DatasetInfo("toy", (1, features), classes, (0.5,), (2.0,))
    raw = torch.randn(count, 1, features, generator=generator)
    targets = torch.randint(0, classes, (count,), generator=generator)
    return TensorSplit(info, raw, targets, 1.0)


def toy_model(features: int = 4, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes))


def lenet(width: float = 1.0, seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return create_model("lenet5", (1, 8, 8), 10, {"width": width})


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- learning -----------------------------------------------------------------------------------------------


def test_lenet5_learns_digits_well_above_chance(digits: DataSplits) -> None:
    model = lenet()
    recorder = Recorder()
    config = TrainConfig(epochs=3, batch_size=32, seed=0)
    history = fit(model, digits.train, digits.val, cross_entropy, config, CPU, [recorder])
    assert [stats.epoch for stats in history.epochs] == [1, 2, 3]
    assert history.epochs == recorder.epochs
    losses = [stats.train_loss for stats in history.epochs]
    assert losses[0] > losses[1] > losses[2]
    assert history.final.val_accuracy is not None and history.final.val_accuracy > 0.8
    assert history.final.train_accuracy > 0.8
    assert evaluate_accuracy(model, digits.test, CPU) > 0.8
    steps_per_epoch = math.ceil(len(digits.train) / 32)
    assert recorder.starts == [(3 * steps_per_epoch, 3)]
    assert recorder.steps == list(range(1, 3 * steps_per_epoch + 1))
    assert recorder.ends == 1


def test_without_val_split_val_accuracy_is_none() -> None:
    history = fit(toy_model(), toy_split(), None, cross_entropy, TrainConfig(epochs=2, batch_size=16), CPU)
    assert len(history.epochs) == 2
    assert all(stats.val_accuracy is None for stats in history.epochs)


@pytest.mark.parametrize(("max_steps", "epochs_run"), [(2, 1), (3 + 2, 2), (3 * 2 + 1, 3)])
def test_max_steps_stops_early(max_steps: int, epochs_run: int) -> None:
    train = toy_split(count=40)  # batch 16: 3 steps per epoch
    recorder = Recorder()
    config = TrainConfig(epochs=5, batch_size=16, max_steps=max_steps)
    history = fit(toy_model(), train, train, cross_entropy, config, CPU, [recorder])
    assert recorder.starts == [(max_steps, 5)]
    assert recorder.steps == list(range(1, max_steps + 1))
    assert len(history.epochs) == epochs_run == len(recorder.epochs)
    assert recorder.ends == 1


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_weights(digits: DataSplits) -> None:
    def run(seed: int, init_seed: int) -> tuple[dict[str, torch.Tensor], list[float]]:
        model = lenet(width=0.5, seed=init_seed)
        history = fit(model, digits.train, digits.val, cross_entropy, TrainConfig(epochs=1, seed=seed), CPU)
        return state_of(model), [stats.train_loss for stats in history.epochs]

    first, first_losses = run(0, 0)
    again, again_losses = run(0, 0)
    assert same_state(first, again)
    assert first_losses == again_losses
    reshuffled, _ = run(1, 0)  # same initial weights, different batch order
    assert not same_state(first, reshuffled)
    other_init, _ = run(0, 1)
    assert not same_state(first, other_init)


# --- divergence ---------------------------------------------------------------------------------------------


def test_nan_loss_raises_at_the_first_step_without_touching_the_weights() -> None:
    model = toy_model()
    before = state_of(model)
    recorder = Recorder()

    def nan_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return logits.sum() * float("nan")

    with pytest.raises(TrainingDiverged) as info:
        fit(model, toy_split(), None, nan_loss, TrainConfig(epochs=3, batch_size=8), CPU, [recorder])
    assert "epoch 1, step 1" in str(info.value)
    assert "--lr" in str(info.value)
    assert isinstance(info.value, ArchcompressError)
    assert recorder.steps == [] and recorder.epochs == []
    assert recorder.starts == [(3 * 5, 3)] and recorder.ends == 1  # a started run is always ended
    assert same_state(before, state_of(model))


def test_huge_learning_rate_diverges(digits: DataSplits) -> None:
    recorder = Recorder()
    config = TrainConfig(epochs=2, batch_size=64, lr=1e30)
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1"):
        fit(lenet(width=0.5), digits.train, digits.val, cross_entropy, config, CPU, [recorder])
    assert recorder.epochs == []  # stopped inside the first epoch, not after it
    assert len(recorder.steps) >= 1 and recorder.ends == 1


# --- optimisers and schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", ["cosine", "step", "none"])
def test_optimisers_and_schedules(monkeypatch: pytest.MonkeyPatch, optimizer: str, schedule: str) -> None:
    captured: list[torch.optim.Optimizer] = []
    original = trainer_module.make_scheduler

    def capture(opt: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> object:
        captured.append(opt)
        return original(opt, config, total_steps)

    monkeypatch.setattr(trainer_module, "make_scheduler", capture)
    model = toy_model()
    before = state_of(model)
    train = toy_split(count=64)  # batch 8: 8 steps per epoch
    config = TrainConfig(epochs=2, batch_size=8, optimizer=optimizer, schedule=schedule)  # type: ignore[arg-type]
    history = fit(model, train, None, cross_entropy, config, CPU)
    assert len(history.epochs) == 2 and all(math.isfinite(s.train_loss) for s in history.epochs)
    assert not same_state(before, state_of(model))

    (opt,) = captured
    expected_type = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    assert type(opt) is expected_type
    base = 1e-3 if optimizer == "adam" else 0.05
    assert config.learning_rate == base
    for group in opt.param_groups:
        assert group["initial_lr"] == pytest.approx(base)
        final = group["lr"]
        if schedule == "cosine":
            assert final == pytest.approx(0.0, abs=base * 1e-6)
        elif schedule == "step":  # x0.1 at 50% and again at 75% of the 16 steps
            assert final == pytest.approx(base * 0.01)
        else:
            assert final == pytest.approx(base)
    if optimizer == "sgd":
        assert opt.param_groups[0]["nesterov"] is True
        assert opt.param_groups[0]["momentum"] == 0.9


def test_step_schedule_milestones() -> None:
    param = nn.Parameter(torch.zeros(2, 2))
    config = TrainConfig(schedule="step", lr=1.0)
    opt = trainer_module.make_optimizer(nn.ParameterList([param]), config)
    scheduler = trainer_module.make_scheduler(opt, config, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs[:10] == [1.0] * 10
    assert lrs[10:15] == pytest.approx([0.1] * 5)
    assert lrs[15:] == pytest.approx([0.01] * 5)


def test_weight_decay_skips_biases_and_norms() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = trainer_module.make_optimizer(model, TrainConfig(weight_decay=0.01))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {p.dim() for p in decay["params"]} == {2, 4}
    assert {p.dim() for p in no_decay["params"]} == {1}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# --- prediction and accuracy --------------------------------------------------------------------------------


def test_predict_logits_is_in_index_order_and_uses_eval_mode() -> None:
    split = toy_split(count=10)
    seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.9)).train()
    out = predict_logits(model, split, CPU, batch_size=3)
    assert out.shape == (10, 3) and out.dtype == torch.float32
    assert not model.training
    with torch.no_grad():
        expected = model((split.raw - 0.5) / 2.0)  # (raw * scale - mean) / std, in index order
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out, predict_logits(model, split, CPU, batch_size=7))


def test_evaluate_accuracy_counts_correct_predictions() -> None:
    info = DatasetInfo("onehot", (1, 3), 3, (0.0,), (1.0,))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    model = nn.Flatten()  # logits are the (one-hot) inputs themselves
    perfect = TensorSplit(info, torch.eye(3)[labels].unsqueeze(1), labels, 1.0)
    assert evaluate_accuracy(model, perfect, CPU, batch_size=3) == 1.0
    shifted = TensorSplit(info, torch.eye(3)[labels].unsqueeze(1), labels.roll(1), 1.0)
    wrong = int((labels != labels.roll(1)).sum())
    assert evaluate_accuracy(model, shifted, CPU) == pytest.approx((len(labels) - wrong) / len(labels))


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"epochs": -3}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": -0.1}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"optimizer": "rmsprop"}, "--optimizer"),
        ({"schedule": "linear"}, "--schedule"),
    ],
)
def test_train_config_rejects_impossible_settings(changes: dict[str, object], flag: str) -> None:
    config = TrainConfig(**changes)  # type: ignore[arg-type]
    with pytest.raises(ArchcompressError) as info:
        config.validate()
    assert str(info.value).startswith(flag)
    model = toy_model()
    before = state_of(model)
    with pytest.raises(ArchcompressError):
        fit(model, toy_split(), None, cross_entropy, config, CPU)
    assert same_state(before, state_of(model))


def test_train_config_defaults_are_valid() -> None:
    TrainConfig().validate()
    assert TrainConfig().learning_rate == 0.05
    assert TrainConfig(optimizer="adam").learning_rate == 1e-3
    assert TrainConfig(lr=0.2, optimizer="adam").learning_rate == 0.2


class RaisingForward(nn.Module):
    """A toy model whose forward raises ``error`` on its ``at``-th call (1-based)."""

    def __init__(self, error: BaseException, at: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.error, self.at, self.calls = error, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.linear(x.flatten(1))


def test_an_error_in_the_models_forward_becomes_one_line_naming_the_forward_and_the_exception() -> None:
    model = RaisingForward(RuntimeError("shapes do not match\nsecond line"), at=2)
    with pytest.raises(ModelForwardError) as info:
        fit(model, toy_split(), None, cross_entropy, TrainConfig(epochs=1, batch_size=8), CPU)
    message = str(info.value)
    assert isinstance(info.value, ArchcompressError)
    assert "\n" not in message
    assert "RaisingForward.forward" in message
    assert "RuntimeError" in message and "shapes do not match" in message
    assert "epoch 1, step 2" in message
    assert isinstance(info.value.__cause__, RuntimeError)  # --debug shows the original traceback


def test_an_error_in_the_forward_during_evaluation_names_the_forward() -> None:
    with pytest.raises(ModelForwardError, match=r"RaisingForward\.forward.*ValueError.*during evaluation"):
        evaluate_accuracy(RaisingForward(ValueError("bad")), toy_split(), CPU)


@pytest.mark.parametrize(
    "error",
    [
        ArchcompressError("our own message"),
        TrainingDiverged("diverged"),
        KeyboardInterrupt(),
        torch.OutOfMemoryError("CUDA out of memory"),
        MemoryError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_our_errors_ctrl_c_and_out_of_memory_pass_through_the_forward_unchanged(error: BaseException) -> None:
    with pytest.raises(type(error)) as info:
        fit(RaisingForward(error), toy_split(), None, cross_entropy, TrainConfig(epochs=1, batch_size=8), CPU)
    assert info.value is error


# --- slow BatchNorm statistics ----------------------------------------------------------------------------------


def bn_net(momentum: float | None) -> nn.Module:
    """A small conv net on 8x8 digits whose BatchNorm layers use ``momentum`` (torchvision's MobileNetV3: 0.01)."""
    seed_everything(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=momentum), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32, momentum=momentum), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip


def test_recalibration_sets_slow_batchnorm_statistics_to_the_training_average_and_leaves_others() -> None:
    split = toy_split(count=64, features=6)
    slow, default = nn.BatchNorm1d(1, momentum=0.01), nn.BatchNorm1d(1)
    model = nn.Sequential(slow, default, nn.Flatten(), nn.Linear(6, 3))
    model.train()
    before = default.running_mean.clone()
    config = TrainConfig(epochs=1, batch_size=16)
    assert trainer_module.recalibrate_slow_batchnorm(model, split, CPU, config) == 1
    inputs = torch.cat([batch.x for batch in split.batches(16)])  # four equal batches: the mean of their means
    assert torch.allclose(slow.running_mean, inputs.mean(dim=(0, 2)), atol=1e-6)
    assert slow.momentum == 0.01 and model.training  # restored
    assert torch.equal(default.running_mean, before)  # a default-momentum layer keeps its own statistics
    assert trainer_module.recalibrate_slow_batchnorm(toy_model(), split, CPU, config) == 0


def test_a_net_with_slow_batchnorm_scores_in_eval_mode_what_it_learnt(
    digits: DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(epochs=3, batch_size=32, seed=0)
    recalibrated = bn_net(0.001)
    fit(recalibrated, digits.train, None, cross_entropy, config, CPU)
    monkeypatch.setattr(trainer_module, "recalibrate_slow_batchnorm", lambda *args, **kwargs: 0)
    lagging = bn_net(0.001)
    fit(lagging, digits.train, None, cross_entropy, config, CPU)
    # the same weights were learnt; only the running statistics differ
    accuracies = evaluate_accuracy(recalibrated, digits.val, CPU), evaluate_accuracy(lagging, digits.val, CPU)
    assert accuracies[0] > 0.8 and accuracies[1] < 0.5, accuracies
