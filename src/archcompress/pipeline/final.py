"""The final step of every method: distil the chosen student on the whole training set, test it once, and
check it against every constraint."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from archcompress.config import CompressConfig
from archcompress.constraints import ConstraintCheck
from archcompress.distill import CachedLogits, evaluate_accuracy, fit
from archcompress.evaluate import Budget
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.evaluate.worker import WorkerState, training_logits
from archcompress.methods import ChosenStudent
from archcompress.runtime import seed_everything


def final_distillation(
    config: CompressConfig, state: WorkerState, chosen: ChosenStudent, device: torch.device
) -> dict[str, Any]:
    """Distil the chosen student for ``final_epochs`` on the whole training set, then test it once."""
    budget = final_budget(config)
    seed_everything(config.seed)
    module = chosen.module
    targets = state.targets
    if budget.subset is not None and not budget.augment:
        # candidate targets cover the training subset only; the final student trains on every sample
        targets = CachedLogits(training_logits(state.context, state.teacher, state.splits, device))
    loss = budget.loss_fn(targets)
    train_config = replace(budget.train_config(config.seed), epochs=config.final_epochs, max_steps=None)
    started = time.perf_counter()
    fit(module, state.splits.train, None, loss, train_config, device)
    final = {
        "val_accuracy": evaluate_accuracy(module, state.splits.val, device),
        "test_accuracy": evaluate_accuracy(module, state.splits.test, device),
        "train_seconds": time.perf_counter() - started,
        "distillation_loss": budget.loss,
        "params": chosen.params,
        "macs": chosen.macs,
    }
    module.cpu()
    return final


def final_budget(config: CompressConfig) -> Budget:
    """The candidates' budget with the final distillation's loss (``final_loss``; ``candidate``: theirs)."""
    if config.final_loss == "candidate":
        return config.candidate
    return replace(config.candidate, loss=config.final_loss)  # type: ignore[arg-type]  # validated: l2 or kd


def final_checks(
    config: CompressConfig, state: WorkerState, chosen: ChosenStudent, final: dict[str, Any]
) -> list[ConstraintCheck]:
    """Every constraint applied to the distilled student (its latency measured the way candidates' are)."""
    constraints = config.constraints
    latency = None
    if constraints.needs_latency:
        latency = measure_latency_ms(chosen.module, state.space.input_shape)
        final["latency_ms"] = latency
    return constraints.check(
        teacher_params=state.space.teacher_cost.params,
        params=chosen.params,
        macs=chosen.macs,
        latency_ms=latency,
        val_accuracy=final["val_accuracy"],
    )
