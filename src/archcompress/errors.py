"""The one exception type users see: its message says what is wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ArchcompressError(Exception):
    """Bad input or an impossible request; the CLI prints the message on one line and exits with code 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def unknown_name_error(kind: str, name: str, known: Iterable[str], hint: str = "") -> ArchcompressError:
    """Build an error for an unknown registry name that suggests the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    suggestion = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    listing = hint or f"known {kind}s: {', '.join(known)}"
    return ArchcompressError(f"unknown {kind} {name!r}: {suggestion}{listing}")
