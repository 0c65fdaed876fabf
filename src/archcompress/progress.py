"""Rich progress display for training runs (a trainer callback)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from archcompress.distill.trainer import EpochStats


class TrainingProgress:
    """A progress bar over optimiser steps with running loss/accuracy, and one line per finished epoch."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.description = description
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._epochs = 0

    def on_train_start(self, total_steps: int, epochs: int) -> None:
        self._epochs = epochs
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total_steps, status="")

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        assert self._task is not None
        self._progress.update(self._task, completed=step, status=f"loss {loss:.4f} acc {accuracy:.2%}")

    def on_epoch_end(self, stats: EpochStats) -> None:
        val = f"  val acc {stats.val_accuracy:.2%}" if stats.val_accuracy is not None else ""
        self._progress.console.print(
            f"epoch {stats.epoch}/{self._epochs}  loss {stats.train_loss:.4f}  "
            f"train acc {stats.train_accuracy:.2%}{val}  ({stats.seconds:.1f}s)"
        )

    def on_train_end(self) -> None:
        self._progress.stop()
