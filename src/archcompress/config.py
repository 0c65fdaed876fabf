"""The resolved settings of a compression run: frozen dataclasses, YAML in and out.

Each component owns its defaults (``DataOptions``, ``Budget``, ``SpaceOptions``); ``CompressConfig`` only
composes them, so ``config.yaml`` in a run directory lists every setting, defaults included, and
``archcompress compress --config RUN/config.yaml`` repeats the run.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archcompress.data import DataOptions
from archcompress.errors import ArchcompressError
from archcompress.evaluate import EXECUTORS, Budget, SpaceOptions
from archcompress.search.embedding import EmbeddingOptions
from archcompress.search.n2n.search import N2NOptions

METHODS = ("n2n", "embedding", "random", "uniform", "prune")
PRESETS = ("fast", "paper")
# First line of every config.yaml archcompress writes: such a file lists every setting, so one with settings
# missing is damaged (truncated), not hand-written.
COMPLETE_MARKER = "# archcompress run config: every setting, defaults included\n"


@dataclass(frozen=True)
class CompressConfig:
    """Every setting of one ``archcompress compress`` run."""

    teacher: str
    out: str
    dataset: str | None = None  # None: the data set the teacher was trained on
    method: str = "random"
    budget: int = 20  # candidate evaluations
    target: float | None = None  # minimum compression ratio (teacher params / student params)
    preset: str = "fast"
    seed: int = 0
    device: str = "auto"
    executor: str = "inline"
    workers: int = 1
    ray_address: str | None = None
    final_epochs: int = 10
    store: str | None = None  # a shared result store; None: RUN/store.sqlite
    uniform_depth: bool = False  # uniform: also cut depth uniformly (every k-th layer), crossed with the widths
    data: DataOptions = field(default_factory=DataOptions)
    candidate: Budget = field(default_factory=Budget)
    space: SpaceOptions = field(default_factory=SpaceOptions)
    n2n: N2NOptions = field(default_factory=N2NOptions)
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)

    def validate(self) -> None:
        """Reject impossible settings with a message that names the option."""
        if self.method not in METHODS:
            raise ArchcompressError(f"--method {self.method!r} is not available: use one of {', '.join(METHODS)}")
        if self.budget < 1:
            raise ArchcompressError(f"--budget must be at least 1 candidate evaluation, got {self.budget}")
        if self.final_epochs < 1:
            raise ArchcompressError(f"--final-epochs must be at least 1, got {self.final_epochs}")
        if self.target is not None and self.target <= 1:
            raise ArchcompressError(f"--target must be a compression ratio above 1 (e.g. 10x), got {self.target}")
        if self.executor not in EXECUTORS:
            raise ArchcompressError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1:
            raise ArchcompressError(f"--workers must be at least 1, got {self.workers}")
        if self.seed < 0:
            raise ArchcompressError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.method == "prune" and self.target is None and not self.n2n.max_params:
            raise ArchcompressError("--method prune needs a size to prune to: give --target (e.g. 10x) or --max-params")
        if self.preset not in PRESETS:
            raise ArchcompressError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        self.candidate.validate()
        self.n2n.validate()
        self.embedding.validate()

    def to_yaml(self) -> str:
        """Every setting as YAML (paths as strings)."""
        return COMPLETE_MARKER + yaml.safe_dump(_plain(dataclasses.asdict(self)), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | Path, *, complete: bool = False) -> CompressConfig:
        """Read a config written by :meth:`to_yaml` (or written by hand with a subset of the keys).

        ``complete=True`` (a run directory's own ``config.yaml``, which lists every setting) refuses a file
        with settings missing: a truncated file can still be valid YAML, and defaults must not silently
        replace the run's settings.
        """
        try:
            text = Path(path).read_text()
            raw = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ArchcompressError(f"cannot read config {path} ({exc}): check the file") from exc
        complete = complete or text.startswith(COMPLETE_MARKER)
        if not isinstance(raw, dict):
            raise ArchcompressError(f"config {path} must be a YAML mapping of settings")
        if complete:
            missing = _missing(cls, raw)
            if missing:
                raise ArchcompressError(
                    f"config {path} lacks setting(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: "
                    "the file is damaged or truncated; restore it or start a new run"
                )
        return _build(cls, raw, str(path))


def parse_target(text: str | None) -> float | None:
    """``"10x"``, ``"10"`` or ``"10.5x"`` -> 10.0."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*[xX]?\s*", text)
    if not match:
        raise ArchcompressError(f"--target {text!r} is not a compression ratio: write it like 10x")
    return float(match.group(1))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _missing(cls: Any, raw: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the settings of dataclass ``cls`` (nested ones dotted) that ``raw`` does not list."""
    missing = []
    for item in dataclasses.fields(cls):
        if item.name not in raw:
            missing.append(prefix + item.name)
            continue
        nested = next((t for t in _members(typing.get_type_hints(cls)[item.name]) if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(raw[item.name], dict):
            missing += _missing(nested, raw[item.name], f"{prefix}{item.name}.")
    return missing


def _build(cls: Any, raw: dict[str, Any], where: str) -> Any:
    """Construct a (nested) frozen dataclass from a mapping, naming unknown or mistyped keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(raw) - fields)  # a hand-written YAML may have keys like 1 or null
    if unknown:
        raise ArchcompressError(
            f"config {where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if not _fits(hint, value):
            number = " (YAML reads 1e-3 as text: write 1.0e-3)" if _is_number_text(value) else ""
            raise ArchcompressError(f"config {where}: setting {name} must be {_describe(hint)}, got {value!r}{number}")
        nested = next((t for t in _members(hint) if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            values[name] = _build(nested, value, f"{where}:{name}")
        elif Path in _members(hint) and value is not None:
            values[name] = Path(value)
        elif tuple in {typing.get_origin(t) for t in _members(hint)} and isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise ArchcompressError(f"config {where}: {exc}") from exc


def _fits(hint: Any, value: Any) -> bool:
    """Whether a value read from YAML has the type of ``hint`` (ranges are checked by ``validate``)."""
    for member in _members(hint):
        origin = typing.get_origin(member)
        if member is Any:
            fits = True
        elif member is type(None):
            fits = value is None
        elif origin is typing.Literal:
            fits = any(type(value) is type(arg) for arg in typing.get_args(member))
        elif origin is tuple:
            item = typing.get_args(member)[0] if typing.get_args(member) else Any
            fits = isinstance(value, list | tuple) and all(_fits(item, v) for v in value)
        elif member is float:
            fits = isinstance(value, int | float) and not isinstance(value, bool)
        elif member is int:
            fits = isinstance(value, int) and not isinstance(value, bool)
        elif dataclasses.is_dataclass(member):
            fits = isinstance(value, dict)
        elif member is Path:
            fits = isinstance(value, str | Path)
        elif isinstance(member, type):
            fits = isinstance(value, member)
        else:
            fits = True
        if fits:
            return True
    return False


def _describe(hint: Any) -> str:
    names = []
    for member in _members(hint):
        if member is type(None):
            names.append("null")
        elif typing.get_origin(member) is typing.Literal:
            names.append(" or ".join(repr(arg) for arg in typing.get_args(member)))
        elif typing.get_origin(member) is tuple:
            names.append("a list of numbers")
        elif dataclasses.is_dataclass(member):
            names.append("a mapping of settings")
        else:
            names.append(getattr(member, "__name__", str(member)))
    return " or ".join(names)


def _is_number_text(value: Any) -> bool:
    """Text such as ``1e-3``, which YAML 1.1 reads as a string, not a number."""
    if not isinstance(value, str) or "e" not in value.lower():
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)
