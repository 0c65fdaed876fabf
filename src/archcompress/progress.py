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
from rich.table import Column

from archcompress.distill.trainer import EpochStats


def _bar(console: Console, description: str = "", total: int = 0) -> Progress:
    """description, done/total, a short bar, elapsed time and ETA, then the status text.

    The counters and times come first and never wrap; on a narrow terminal the status text is what gets cut
    (with an ellipsis), so its most important figures are written first.
    """

    def fixed(width: int) -> Column:
        return Column(no_wrap=True, min_width=width)

    counter = 2 * len(str(total)) + 1  # "done/total"
    return Progress(
        TextColumn("[bold]{task.description}", table_column=fixed(len(description))),
        MofNCompleteColumn(table_column=fixed(counter)),
        BarColumn(bar_width=12),
        TimeElapsedColumn(table_column=fixed(7)),
        TextColumn("eta", table_column=fixed(3)),
        TimeRemainingColumn(table_column=fixed(7)),
        TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        console=console,
    )


class TrainingProgress:
    """A progress bar over optimiser steps with running loss/accuracy, and one line per finished epoch."""

    def __init__(self, description: str, console: Console | None = None) -> None:
        self.description = description
        self.console = console or Console(stderr=True)
        self._progress = _bar(self.console, description)
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


class SearchProgress:
    """A progress bar over candidate evaluations with the last candidate's accuracy and size."""

    def __init__(self, description: str, total: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = _bar(self.console, description, total)
        self._task = self._progress.add_task(description, total=total, status="")
        self._started = False

    def __enter__(self) -> SearchProgress:
        return self  # the bar appears with the first result, so early input errors print alone

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def update(self, done: int, last: str) -> None:
        """Set the number of finished evaluations and describe the last one."""
        if not self._started:
            # marked only once start() has returned: a Ctrl-C inside it must not make __exit__ stop a display
            # that never finished starting (rich then fails with an IndexError that hides the interrupt)
            self._progress.start()
            self._started = True
        self._progress.update(self._task, completed=done, status=last)

    def print(self, text: str) -> None:
        """Print a line above the bar."""
        self._progress.console.print(text, highlight=False)
