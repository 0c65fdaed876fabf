"""Teacher zoo registry: a decorator to register a factory, and one place to look names up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from archcompress.errors import ArchcompressError, unknown_name_error

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ZooEntry:
    """A registered teacher: its factory, a one-line description, and the input rank it expects."""

    name: str
    factory: ModelFactory
    description: str
    input_rank: int | None  # 3 for (C, H, W), 2 for (C, L), None for any


_ZOO: dict[str, ZooEntry] = {}


def register_model(name: str, description: str, input_rank: int | None = 3) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(input_shape, num_classes, **kwargs) -> nn.Module`` under ``name``."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _ZOO:
            raise ValueError(f"model {name!r} registered twice")
        _ZOO[name] = ZooEntry(name, factory, description, input_rank)
        return factory

    return decorate


def zoo_entries() -> list[ZooEntry]:
    """All registered zoo teachers, sorted by name."""
    return [_ZOO[name] for name in sorted(_ZOO)]


def zoo_entry(name: str) -> ZooEntry:
    """Look up a zoo teacher, suggesting the closest names when it does not exist."""
    if name not in _ZOO:
        raise unknown_name_error(
            "model",
            name,
            _ZOO,
            hint="run `archcompress models` for the zoo, or use torchvision:NAME, file.py:Factory "
            "or package.module:Factory",
        )
    return _ZOO[name]


def check_input_rank(entry: ZooEntry, input_shape: tuple[int, ...]) -> None:
    """Fail clearly when a 2-D image model is asked for a 1-D signal or the other way round."""
    if entry.input_rank is not None and len(input_shape) != entry.input_rank:
        wanted = "an image input (C, H, W)" if entry.input_rank == 3 else "a 1-D signal input (C, L)"
        raise ArchcompressError(
            f"model {entry.name!r} needs {wanted} but the input shape is {tuple(input_shape)}: "
            "pick a model that matches the data set (see `archcompress models`)"
        )
