"""The training budget of one candidate evaluation, and its canonical key in the result store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from archcompress.distill import DistillLoss, LossFn, TeacherTargets, TrainConfig, make_distill_loss
from archcompress.distill.trainer import Optimizer, Schedule
from archcompress.errors import ArchcompressError

Init = Literal["inherit", "scratch"]


def parse_rungs(text: str) -> tuple[int, ...]:
    """``"1,3,9"`` -> ``(1, 3, 9)``; ``"none"`` -> ``()`` (one fidelity); anything else is refused by name."""
    if text.strip().lower() == "none":
        return ()
    try:
        rungs = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ArchcompressError(
            f"--rungs {text!r} must be increasing epoch counts, comma-separated (e.g. 1,3,9), or none"
        ) from None
    Budget(rungs=rungs).validate()
    return rungs


@dataclass(frozen=True)
class Budget:
    """How a candidate student is trained before its val accuracy is measured.

    Defaults are the ``fast`` preset (inherited weights, 2 epochs); ``Budget.paper()`` gives the N2N code's
    settings (fresh init, 5 epochs of Adam at 5e-4, weight decay 5e-4).
    """

    epochs: int = 2
    max_steps: int | None = None
    subset: int | None = None  # train on this many (class-stratified) training samples; None = all
    loss: DistillLoss = "l2"
    hard_weight: float = 0.0
    temperature: float = 4.0
    alpha: float = 0.9
    optimizer: Optimizer = "adam"
    lr: float = 5e-4
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"
    batch_size: int = 64
    init: Init = "inherit"
    augment: bool = False  # on: the teacher runs live every step instead of from the logit cache
    # Multi-fidelity: the epochs (cumulative) after which a candidate is scored, e.g. (1, 3, 9). One run whose
    # learning-rate schedule spans the last rung; a promoted candidate continues from its previous rung's weights.
    # Empty: every candidate trains ``epochs`` once.
    rungs: tuple[int, ...] = ()

    @classmethod
    def paper(cls, batch_size: int = 64) -> Budget:
        """[N2N code] per-candidate training: fresh init, 5 epochs, Adam 5e-4, wd 5e-4, constant lr."""
        return cls(epochs=5, init="scratch", schedule="none", batch_size=batch_size)

    def validate(self) -> None:
        """Reject budgets that cannot train."""
        if self.epochs < 1:
            raise ArchcompressError(f"candidate training needs at least 1 epoch, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ArchcompressError(f"--max-steps must be positive, got {self.max_steps}")
        if self.subset is not None and self.subset < 1:
            raise ArchcompressError(f"--subset must be positive, got {self.subset}")
        if self.loss not in ("l2", "kd"):
            raise ArchcompressError(f"--loss must be l2 or kd, got {self.loss!r}")
        if self.rungs and (any(epochs < 1 for epochs in self.rungs) or list(self.rungs) != sorted(set(self.rungs))):
            given = ",".join(map(str, self.rungs))
            raise ArchcompressError(f"--rungs must be increasing epoch counts of at least 1 (e.g. 1,3,9), got {given}")
        if self.init not in ("inherit", "scratch"):
            raise ArchcompressError(f"--init must be inherit or scratch, got {self.init!r}")
        self.train_config(seed=0).validate()

    @property
    def top_rung(self) -> int:
        """The index of the last rung (0 without rungs)."""
        return max(0, len(self.rungs) - 1)

    @property
    def schedule_epochs(self) -> int:
        """The epochs the learning-rate schedule spans: the last rung's, or ``epochs``."""
        return self.rungs[-1] if self.rungs else self.epochs

    def rung_epochs(self, rung: int) -> int:
        """Epochs trained in all by the time rung ``rung`` is scored."""
        return self.rungs[rung] if self.rungs else self.epochs

    def key(self, rung: int = 0) -> str:
        """Canonical text of every field, and the rung: equal budgets, equal keys (the store's ``budget`` column).

        Budgets without rungs keep the keys they had before rungs existed, so older stores stay valid.
        """
        values = asdict(self)
        if self.rungs:
            values["epochs"] = self.schedule_epochs  # ``epochs`` itself is not used
            values["rung"] = rung
        else:
            del values["rungs"]
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    def loss_fn(self, targets: TeacherTargets) -> LossFn:
        """The distillation loss of this budget, bound to a source of teacher logits."""
        return make_distill_loss(
            self.loss, targets, hard_weight=self.hard_weight, temperature=self.temperature, alpha=self.alpha
        )

    def train_config(self, seed: int) -> TrainConfig:
        """The trainer settings for one evaluation: every field this budget shares with ``TrainConfig``."""
        shared = {f.name for f in fields(TrainConfig)} & {f.name for f in fields(self)}
        config = replace(TrainConfig(), seed=seed, **{name: getattr(self, name) for name in shared})
        return replace(config, epochs=self.schedule_epochs)
