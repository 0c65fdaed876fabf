"""From what the user asked (CLI flags or API keywords) to a run's ``CompressConfig``: one path for a new
run, ``--config FILE`` and ``--resume``, so that no setting is silently ignored.

Changes are given by setting path: ``budget``, ``candidate.epochs``, ``space.ratios``, ``n2n.rollouts`` (a
method's options by its name), or a whole section (``candidate`` -> a ``Budget``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from archcompress.config import CompressConfig
from archcompress.errors import ArchcompressError
from archcompress.rundir import CONFIG_FILE

# Settings a resumed run may change: they decide where and how fast evaluations run, not what they give, or
# (budget) only extend the search; every stored evaluation stays valid.
RESUME_SAFE = ("executor", "workers", "ray_address", "device", "workers_per_gpu", "threads")


def get_setting(config: CompressConfig, path: str) -> Any:
    """The value at a setting path (see the module docstring)."""
    head, _, rest = path.partition(".")
    value = config.options_for(head) if head in config.methods else getattr(config, head)
    for part in rest.split(".") if rest else ():
        value = getattr(value, part)
    return value


def set_setting(config: CompressConfig, path: str, value: Any) -> CompressConfig:
    """A copy of ``config`` with the setting at ``path`` replaced (an unknown path is refused by name)."""
    head, _, rest = path.partition(".")
    if head in config.methods:
        methods = dict(config.methods)
        methods[head] = _set_nested(config.options_for(head), rest, value, path) if rest else value
        return replace(config, methods=methods)
    if head not in {f.name for f in dataclasses.fields(config)} or head == "methods":
        raise ArchcompressError(f"unknown setting {path!r}")
    return replace(config, **{head: _set_nested(getattr(config, head), rest, value, path) if rest else value})


def _set_nested(obj: Any, path: str, value: Any, full: str) -> Any:
    head, _, rest = path.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ArchcompressError(f"unknown setting {full!r}")
    inner = _set_nested(getattr(obj, head), rest, value, full) if rest else value
    return replace(obj, **{head: inner})  # type: ignore[type-var]


def resolve_settings(
    *,
    teacher: str | None,
    out: str | Path | None,
    changes: Mapping[str, Any],
    resume: bool = False,
    config_file: str | Path | None = None,
    labels: Mapping[str, str] | None = None,
) -> tuple[CompressConfig, list[str]]:
    """The run's config and notes on what was applied: a new run (``preset`` from ``changes``, default fast),
    a repeat of ``config_file`` with ``changes`` on top, or a ``resume`` of the run in ``out``.

    ``labels`` name settings the way the caller's user wrote them (``{"candidate.epochs": "--epochs"}``).
    """
    labels = labels or {}

    def label(path: str) -> str:
        return labels.get(path, path)

    changes = dict(changes)
    if "candidate.epochs" in changes and "candidate.rungs" not in changes and not resume:
        changes["candidate.rungs"] = ()  # --epochs alone: every candidate trains that long once
    if resume:
        if out is None:
            raise ArchcompressError("--resume needs --out RUN_DIR: the run directory to continue")
        stored_file = Path(out) / CONFIG_FILE
        if not stored_file.is_file():
            raise ArchcompressError(f"--resume {out}: no {CONFIG_FILE} there, so it is not a run directory to continue")
        stored = replace(CompressConfig.from_yaml(stored_file, complete=True), out=str(out))  # even if moved since
        if teacher is not None and Path(teacher).resolve() != Path(stored.teacher).resolve():
            raise ArchcompressError(
                f"--resume {out}: that run compresses {stored.teacher}, not {teacher}; drop the teacher argument"
            )
        return _resume(stored, changes, label)
    if config_file is not None:
        config = CompressConfig.from_yaml(config_file)
        if teacher is not None:
            config = replace(config, teacher=str(teacher))
        if out is not None:
            config = replace(config, out=str(out))
        notes = []
        for setting, value in changes.items():
            old = get_setting(config, setting)
            if old != value:
                notes.append(f"{label(setting)} {_text(value)} replaces {_text(old)} of {config_file}")
                config = set_setting(config, setting, value)
        return config, notes
    if teacher is None or out is None:
        raise ArchcompressError("give a TEACHER checkpoint and --out RUN_DIR (or --config / --resume)")
    config = CompressConfig.create(str(teacher), str(out), preset=changes.pop("preset", "fast"))
    for setting, value in changes.items():
        config = set_setting(config, setting, value)
    return config, []


def _resume(stored: CompressConfig, changes: dict[str, Any], label: Any) -> tuple[CompressConfig, list[str]]:
    config, notes = stored, []
    for path, value in changes.items():
        current = get_setting(stored, path)
        if current == value:
            continue
        if path == "budget" and value > current:
            notes.append(f"{label(path)} raised from {current} to {value}: the search continues where it stopped")
        elif path in RESUME_SAFE:
            notes.append(f"{label(path)} {_text(value)} replaces the run's {_text(current)}")
        else:
            lower = " (a resumed run's budget may only grow)" if path == "budget" else ""
            raise ArchcompressError(
                f"--resume keeps the run's settings: {label(path)} {_text(value)} differs from the run's "
                f"{_text(current)}{lower}; drop {label(path)}, or start a new run with --config "
                f"{Path(stored.out) / CONFIG_FILE} --out NEW_DIR"
            )
        config = set_setting(config, path, value)
    return config, notes


def _text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)
