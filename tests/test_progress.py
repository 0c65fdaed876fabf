"""The search progress bar: lazy start, and a Ctrl-C while it starts stays a Ctrl-C."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from archcompress.progress import SearchProgress


def test_the_bar_starts_with_the_first_result_and_prints_it() -> None:
    out = io.StringIO()
    with SearchProgress("n2n search", 4, Console(file=out, force_terminal=False, width=100)) as bar:
        assert out.getvalue() == ""  # nothing before the first result
        bar.update(1, "acc 90.00% at 10x")
        bar.print("stage 2")
    assert "stage 2" in out.getvalue()
    assert "1/4" in out.getvalue()


def test_an_interrupt_while_the_bar_starts_is_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)

    def interrupted(show: bool = True) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(console, "show_cursor", interrupted)  # rich's Live.start calls it midway
    with pytest.raises(KeyboardInterrupt), SearchProgress("n2n search", 4, console) as bar:
        bar.update(1, "acc 90.00% at 10x")
