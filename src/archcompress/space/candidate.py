"""Candidates: the actions N2N's two stages take, as plain data with a JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from archcompress.errors import ArchcompressError

CANDIDATE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """Keep flag per removable unit, width ratio per shrinkable channel group, kernel ratio per plain conv.

    Positions follow ``CompressionSpace.removable_units``, ``.shrink_groups`` and ``.kernel_units``. A
    candidate means nothing without its space; ``CompressionSpace.candidate_hash`` gives its canonical hash.
    """

    keep: tuple[bool, ...]
    ratios: tuple[float, ...]
    kernel_ratios: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # accept lists / numpy scalars from callers and JSON, store plain tuples of bool / float
        object.__setattr__(self, "keep", tuple(bool(k) for k in self.keep))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "kernel_ratios", tuple(float(r) for r in self.kernel_ratios))
        if not all(math.isfinite(r) for r in (*self.ratios, *self.kernel_ratios)):
            raise ArchcompressError(f"candidate ratios must be finite numbers, got {self.ratios} {self.kernel_ratios}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "version": CANDIDATE_VERSION,
            "keep": list(self.keep),
            "ratios": list(self.ratios),
            "kernel_ratios": list(self.kernel_ratios),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise ArchcompressError(
                f"a candidate must be a JSON object with keep and ratios, not a {type(data).__name__}"
            )
        if data.get("version", CANDIDATE_VERSION) != CANDIDATE_VERSION:
            raise ArchcompressError(
                f"candidate version {data.get('version')!r} is not supported (expected {CANDIDATE_VERSION})"
            )
        try:
            return cls(
                keep=tuple(data["keep"]),
                ratios=tuple(data["ratios"]),
                kernel_ratios=tuple(data.get("kernel_ratios", ())),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400)
            raise ArchcompressError(
                f"malformed candidate ({type(exc).__name__}: {exc}): expected "
                '{"keep": [true, ...], "ratios": [0.5, ...], "kernel_ratios": [...]}'
            ) from exc

    def to_json(self) -> str:
        """Compact, key-sorted JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        """Parse :meth:`to_json` output (or any JSON object of the same shape)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchcompressError(f"candidate is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ArchcompressError("candidate JSON must be an object with keep, ratios and kernel_ratios")
        return cls.from_dict(data)
