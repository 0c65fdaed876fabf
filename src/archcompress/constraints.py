"""The limits a student must meet (``--target``, ``--max-params``, ``--max-macs``, ``--max-latency-ms``,
``--min-accuracy``), checked the same way for every method, for candidates and for the final student."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archcompress.errors import ArchcompressError


@dataclass(frozen=True)
class ConstraintCheck:
    """One constraint applied to one student: its limit, the student's value, and whether it is met."""

    name: str  # target | max_params | max_macs | max_latency_ms | min_accuracy
    limit: float
    value: float | None  # None: not measured (e.g. latency of a student that did not train)
    met: bool

    def excess(self) -> float:
        """How far the value is past the limit, relative to it (0 when met, 1 when unmeasured)."""
        if self.met:
            return 0.0
        if self.value is None:
            return 1.0
        if self.name == "min_accuracy":
            return (self.limit - self.value) / max(self.limit, 1e-9)
        if self.name == "target":  # value and limit are compression ratios: lower is worse
            return self.limit / max(self.value, 1e-9) - 1.0
        return self.value / max(self.limit, 1e-9) - 1.0

    def to_dict(self) -> dict[str, float | str | bool | None]:
        """The ``report.json`` form: ``{name, limit, value, met}``."""
        return {"name": self.name, "limit": self.limit, "value": self.value, "met": self.met}


@dataclass(frozen=True)
class Constraints:
    """Every limit a student must meet; ``None`` means no limit."""

    target: float | None = None  # minimum compression ratio, teacher params / student params
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None  # CPU latency at batch 1
    min_accuracy: float | None = None  # val accuracy, a fraction in [0, 1]

    def validate(self) -> None:
        """Reject impossible limits with a message that names the option."""
        if self.target is not None and not (self.target > 1 and math.isfinite(self.target)):
            raise ArchcompressError(f"--target must be a compression ratio above 1 (e.g. 10x), got {self.target}")
        for name, limit in (("max-params", self.max_params), ("max-macs", self.max_macs)):
            if limit is not None and limit < 1:
                raise ArchcompressError(f"--{name} must be a positive count, got {limit}")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise ArchcompressError(
                f"--max-latency-ms must be a positive number of milliseconds, got {self.max_latency_ms}"
            )
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise ArchcompressError(f"--min-accuracy is a fraction between 0 and 1, got {self.min_accuracy}")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return bool(self.limits())

    @property
    def needs_latency(self) -> bool:
        """Whether candidates must have their latency measured to be checked."""
        return self.max_latency_ms is not None

    def param_limit(self, teacher_params: int) -> int | None:
        """The most parameters a student may have (``--target`` and ``--max-params`` together), if limited."""
        limits = [self.max_params] if self.max_params is not None else []
        if self.target is not None:
            limits.append(math.floor(teacher_params / self.target))
        return min(limits) if limits else None

    def limits(self) -> list[tuple[str, float]]:
        """The set limits as ``(name, limit)``, in report order."""
        named = (("target", self.target), ("max_params", self.max_params), ("max_macs", self.max_macs),
                 ("max_latency_ms", self.max_latency_ms), ("min_accuracy", self.min_accuracy))  # fmt: skip
        return [(name, limit) for name, limit in named if limit is not None]

    def check(
        self,
        *,
        teacher_params: int,
        params: int | None,
        macs: int | None,
        latency_ms: float | None = None,
        val_accuracy: float | None = None,
    ) -> list[ConstraintCheck]:
        """Each set limit applied to a student with these figures (an unmeasured figure fails its limit)."""
        ratio = teacher_params / params if params else None
        values = {"target": ratio, "max_params": params, "max_macs": macs, "max_latency_ms": latency_ms,
                  "min_accuracy": val_accuracy}  # fmt: skip
        checks = []
        for name, limit in self.limits():
            value = values[name]
            at_least = name in ("target", "min_accuracy")  # the others are upper limits
            met = value is not None and (value >= limit if at_least else value <= limit)
            checks.append(ConstraintCheck(name, limit, value, met))
        return checks

    def describe(self) -> str:
        """The set limits in words, e.g. ``10x target, at most 50,000 MACs``; ``no constraints`` when none."""
        words = []
        if self.target is not None:
            words.append(f"{self.target:g}x target")
        if self.max_params is not None:
            words.append(f"at most {self.max_params:,} params")
        if self.max_macs is not None:
            words.append(f"at most {self.max_macs:,} MACs")
        if self.max_latency_ms is not None:
            words.append(f"at most {self.max_latency_ms:g} ms latency")
        if self.min_accuracy is not None:
            words.append(f"at least {self.min_accuracy:.2%} val accuracy")
        return ", ".join(words) or "no constraints"
