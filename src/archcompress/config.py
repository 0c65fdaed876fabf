"""The resolved settings of a compression run: frozen dataclasses, YAML in and out.

Each component owns its defaults (``DataOptions``, ``Budget``, ``SpaceOptions``, and each method's options from
the method registry); ``CompressConfig`` only composes them, so ``config.yaml`` in a run directory lists every
setting, defaults included, and ``archcompress compress --config RUN/config.yaml`` repeats the run. A method's
options are the YAML section named after it (``n2n:``, ``embedding:``, ``uniform:``); a registered method
with options gets its section without a change here.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from archcompress.constraints import Constraints
from archcompress.data import DataOptions
from archcompress.errors import ArchcompressError
from archcompress.evaluate import EXECUTORS, Budget
from archcompress.evaluate.rungs import DEFAULT_PROMOTE
from archcompress.methods import get_method, methods_with_options
from archcompress.space import SpaceOptions
from archcompress.space.options import N2N_CODE_REMOVABLE

PRESETS = ("fast", "paper")
# First line of every config.yaml archcompress writes: such a file lists every setting, so one with settings
# missing is damaged (truncated), not hand-written.
COMPLETE_MARKER = "# archcompress run config: every setting, defaults included\n"
# Settings that moved since 0.1.0's first run directories: (old path, new path); a config with an old one is
# read with it moved, so runs started before the move still resume.
MOVED_SETTINGS = (
    ("n2n.max_params", "max_params"),
    ("n2n.max_macs", "max_macs"),
    ("n2n.min_accuracy", "min_accuracy"),
    ("uniform_depth", "uniform.depth"),
)
# Settings added since 0.1.0's first run directories: a complete config.yaml written before may lack them (their
# defaults apply); a truncated file still lacks others, so it is still refused.
ADDED_SETTINGS = (
    "max_latency_ms", "finalists", "finalist_epochs", "threads", "workers_per_gpu", "promote", "candidate.rungs",
    "final_loss",
)  # fmt: skip


# The fast preset's multi-fidelity rungs, in epochs: every candidate is scored after 1 epoch of a 9-epoch schedule,
# the best third of those that meet the limits after 3, the best third of those after 9 (docs/benchmarks.md).
FAST_RUNGS = (1, 3, 9)


def candidate_budget(preset: str) -> Budget:
    """The per-candidate training budget of ``preset``: ``fast`` (inherited weights, rungs after 1, 3 and 9
    epochs) or ``paper`` (the N2N code's: fresh init, 5 epochs each)."""
    return Budget.paper() if preset == "paper" else Budget(rungs=FAST_RUNGS)


# The chosen student's distillation loss: ``candidate`` distils it with the candidates' --loss (what every run did
# before final_loss existed, and the paper preset's); the fast preset's Hinton KD was chosen by measurement
# (benchmarks/final_distillation.py, docs/benchmarks.md).
FINAL_LOSSES = ("l2", "kd", "candidate")
FAST_FINAL_LOSS = "kd"


def final_loss(preset: str) -> str:
    """The final distillation loss of ``preset``: ``kd`` (fast) or the candidates' own (paper)."""
    return "candidate" if preset == "paper" else FAST_FINAL_LOSS


def space_options(preset: str) -> SpaceOptions:
    """The compression space of ``preset``: ``paper`` removes only what the N2N code removes (no linear layers)."""
    return SpaceOptions(removable=N2N_CODE_REMOVABLE) if preset == "paper" else SpaceOptions()


def method_options(preset: str = "fast") -> dict[str, Any]:
    """Every registered method's options under ``preset``, by method name."""
    return {name: get_method(name).preset_options(preset) for name in methods_with_options()}


@dataclass(frozen=True)
class CompressConfig:
    """Every setting of one ``archcompress compress`` run.

    Build one with :meth:`create` to get the ``preset``'s defaults for the candidate budget and the method
    options; the plain constructor takes every default from ``fast``.
    """

    teacher: str
    out: str
    dataset: str | None = None  # None: the data set the teacher was trained on
    method: str = "n2n"
    budget: int = 20  # candidate evaluations
    target: float | None = None  # minimum compression ratio (teacher params / student params)
    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None  # CPU latency at batch 1
    min_accuracy: float | None = None  # val accuracy, a fraction
    preset: str = "fast"
    seed: int = 0
    device: str = "auto"
    executor: str = "inline"
    workers: int = 1
    workers_per_gpu: int = 1  # with --device cuda: evaluations sharing one GPU (process/ray executors)
    threads: int | None = None  # torch threads per evaluation; None: chosen by the student's size
    ray_address: str | None = None
    final_epochs: int = 10
    final_loss: str = FAST_FINAL_LOSS  # l2, kd or candidate (the candidates' --loss); see final_loss(preset)
    # before the final distillation, this many of the best candidates that meet every constraint are trained
    # again for finalist_epochs, and the best by val accuracy is distilled (0 or 1: the best reward is distilled)
    finalists: int = 0
    finalist_epochs: int = 10
    # with candidate.rungs: the share of each rung's eligible candidates that trains on to the next rung
    promote: float = DEFAULT_PROMOTE
    store: str | None = None  # a shared result store; None: RUN/store.sqlite
    data: DataOptions = field(default_factory=DataOptions)
    candidate: Budget = field(default_factory=lambda: candidate_budget("fast"))
    space: SpaceOptions = field(default_factory=SpaceOptions)
    methods: Mapping[str, Any] = field(default_factory=method_options)  # each method's options, by name

    @classmethod
    def create(cls, teacher: str, out: str, *, preset: str = "fast", **settings: Any) -> CompressConfig:
        """A config whose unset candidate budget and method options come from ``preset``.

        A method's options may be given by its name (``n2n=N2NOptions(...)``); unknown settings are refused.
        """
        if preset not in PRESETS:
            raise ArchcompressError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        methods = dict(method_options(preset))
        methods.update(settings.pop("methods", {}))
        for name in list(settings):
            if name in methods:
                methods[name] = settings.pop(name)
        settings.setdefault("candidate", candidate_budget(preset))
        settings.setdefault("space", space_options(preset))
        settings.setdefault("final_loss", final_loss(preset))
        try:
            return cls(teacher=teacher, out=out, preset=preset, methods=methods, **settings)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(cls) if f.name != "methods")
            raise ArchcompressError(f"unknown setting ({exc}); known: {known}, {', '.join(methods)}") from exc

    @property
    def constraints(self) -> Constraints:
        """The limits the final student must meet."""
        return Constraints(self.target, self.max_params, self.max_macs, self.max_latency_ms, self.min_accuracy)

    def options_for(self, method: str) -> Any:
        """The options of ``method`` (its preset default when this config has none)."""
        if method in self.methods:
            return self.methods[method]
        return get_method(method).preset_options(self.preset)

    def validate(self) -> None:
        """Reject impossible settings with a message that names the option."""
        method = get_method(self.method)  # refuses an unknown method, naming the available ones
        if self.budget < 1:
            raise ArchcompressError(f"--budget must be at least 1 candidate evaluation, got {self.budget}")
        if self.final_epochs < 1:
            raise ArchcompressError(f"--final-epochs must be at least 1, got {self.final_epochs}")
        if self.final_loss not in FINAL_LOSSES:
            raise ArchcompressError(f"--final-loss must be one of {', '.join(FINAL_LOSSES)}, got {self.final_loss!r}")
        if self.finalists < 0:
            raise ArchcompressError(f"--finalists must be 0 or more, got {self.finalists}")
        if self.finalist_epochs < 1:
            raise ArchcompressError(f"--finalist-epochs must be at least 1, got {self.finalist_epochs}")
        if not 0 < self.promote < 1:
            raise ArchcompressError(f"--promote must be a share between 0 and 1 (e.g. 0.33), got {self.promote}")
        if self.executor not in EXECUTORS:
            raise ArchcompressError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 1:
            raise ArchcompressError(f"--workers must be at least 1, got {self.workers}")
        if self.workers_per_gpu < 1:
            raise ArchcompressError(f"--workers-per-gpu must be at least 1, got {self.workers_per_gpu}")
        if self.threads is not None and self.threads < 1:
            raise ArchcompressError(f"--threads must be at least 1 (or left unset: chosen by size), got {self.threads}")
        if self.seed < 0:
            raise ArchcompressError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.preset not in PRESETS:
            raise ArchcompressError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        self.constraints.validate()
        self.candidate.validate()
        self.space.validate()
        for name, options in self.methods.items():
            expected = methods_with_options().get(name)
            if expected is None or not isinstance(options, expected):
                raise ArchcompressError(
                    f"the options of method {name!r} must be a {getattr(expected, '__name__', '?')}"
                )
            if hasattr(options, "validate"):
                options.validate()
        method.validate_config(self)

    def notes(self) -> list[str]:
        """Settings that do not apply to this method, or that work against each other (never fatal)."""
        return get_method(self.method).config_notes(self)

    def to_yaml(self) -> str:
        """Every setting as YAML (paths as strings); each method's options as the section named after it."""
        raw = _plain(dataclasses.asdict(self))
        methods = raw.pop("methods")
        raw.update({name: methods[name] for name in methods})
        return COMPLETE_MARKER + yaml.safe_dump(raw, sort_keys=False)

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
        return cls.from_mapping(raw, str(path), complete=complete)

    @classmethod
    def from_mapping(cls, raw: Any, where: str, *, complete: bool = False) -> CompressConfig:
        """A config from a mapping of settings (YAML-shaped); ``preset`` supplies what the mapping leaves out."""
        if not isinstance(raw, dict):
            raise ArchcompressError(f"config {where} must be a YAML mapping of settings")
        raw = dict(raw)
        migrated = _migrate(raw)
        sections = methods_with_options()
        if complete:
            missing = [name for name in _missing(cls, raw) if name != "methods"]
            missing += [name for name in sections if name not in raw]
            missing = [name for name in missing if name not in ADDED_SETTINGS]
            if migrated:  # written before method sections: uniform's is new
                missing = [name for name in missing if name not in sections]
            if missing:
                raise ArchcompressError(
                    f"config {where} lacks setting(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: "
                    "the file is damaged or truncated; restore it or start a new run"
                )
        preset = raw.get("preset", "fast")
        if preset not in PRESETS:
            raise ArchcompressError(f"config {where}: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        methods = method_options(preset)
        for name, options_type in sections.items():
            if name in raw:
                section = raw.pop(name)
                if not isinstance(section, dict):
                    raise ArchcompressError(f"config {where}: setting {name} must be a mapping of settings")
                if complete:  # options added since the run was written: it resumes as it ran
                    section = {**getattr(options_type, "LEGACY_DEFAULTS", {}), **section}
                methods[name] = _build(options_type, section, f"{where}:{name}", base=methods[name])
        if "methods" in raw:
            raise ArchcompressError(f"config {where}: unknown setting methods (write each method's section by name)")
        if "candidate" in raw and isinstance(raw["candidate"], dict):
            # a run written before rungs existed trained every candidate once: it resumes that way; and epochs
            # alone in a hand-written file mean one fidelity, as --epochs alone does
            if complete or "epochs" in raw["candidate"]:
                raw["candidate"].setdefault("rungs", [])
            raw["candidate"] = _build(Budget, raw["candidate"], f"{where}:candidate", base=candidate_budget(preset))
        elif "candidate" not in raw:
            raw["candidate"] = candidate_budget(preset)
        # a run written before final_loss existed distilled its student with the candidates' loss: it resumes so
        raw.setdefault("final_loss", "candidate" if complete else final_loss(preset))
        if "space" in raw and isinstance(raw["space"], dict):
            raw["space"] = _build(SpaceOptions, raw["space"], f"{where}:space", base=space_options(preset))
        elif "space" not in raw:
            raw["space"] = space_options(preset)
        config: CompressConfig = _build(cls, raw, where, extra_known=tuple(sections))
        return replace(config, methods=methods)


def _migrate(raw: dict[str, Any]) -> bool:
    """Move settings from their old place to their new one (see ``MOVED_SETTINGS``); whether any moved."""
    moved = False
    space = raw.get("space")
    if isinstance(space, dict) and "remove_pooling" in space:  # 0.1.0: a switch for max pooling alone
        keep_pools = space.pop("remove_pooling") is False
        space.setdefault("removable", [k for k in N2N_CODE_REMOVABLE if not (keep_pools and k == "max-pool")])
        moved = True
    for old, new in MOVED_SETTINGS:
        *old_parents, old_key = old.split(".")
        holder: Any = raw
        for parent in old_parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or old_key not in holder:
            continue
        value = holder.pop(old_key)
        *new_parents, new_key = new.split(".")
        target = raw
        for parent in new_parents:
            target = target.setdefault(parent, {})
        target.setdefault(new_key, value)
        moved = True
    return moved


def parse_target(text: str | None) -> float | None:
    """``"10x"``, ``"10"`` or ``"10.5x"`` -> 10.0."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*[xX]?\s*", text)
    if not match:
        raise ArchcompressError(f"--target {text!r} is not a compression ratio: write it like 10x (or 1e3x)")
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


def _build(cls: Any, raw: dict[str, Any], where: str, *, base: Any = None, extra_known: tuple[str, ...] = ()) -> Any:
    """Construct a (nested) frozen dataclass from a mapping, naming unknown or mistyped keys.

    ``base``: an instance whose values stand in for the keys the mapping leaves out (else the class defaults).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)} - {"methods"}
    unknown = sorted(str(key) for key in set(raw) - fields)  # a hand-written YAML may have keys like 1 or null
    if unknown:
        known = ", ".join(sorted((*fields, *extra_known)))
        raise ArchcompressError(f"config {where}: unknown setting(s) {', '.join(unknown)} (known: {known})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(value) and type(value) in _members(hint):
            values[name] = value  # already built (e.g. a preset's default)
            continue
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
        return replace(base, **values) if base is not None else cls(**values)
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
