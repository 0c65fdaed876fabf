"""The method registry: every compression method registers itself here under its ``--method`` name.

Adding a method means writing one :class:`~archcompress.methods.base.Method` subclass decorated with
:func:`register_method`; the config, the CLI's ``--method`` help, the pipeline and the report pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from archcompress.errors import ArchcompressError

if TYPE_CHECKING:
    from archcompress.methods.base import Method

M = TypeVar("M", bound="type[Method]")

_METHODS: dict[str, type[Method]] = {}


def register_method(name: str, options: type | None = None) -> Callable[[M], M]:
    """Class decorator: register a :class:`Method` subclass as ``--method name`` with its options dataclass.

    The options (a frozen dataclass with defaults and an optional ``validate()``) become the ``name:`` section
    of ``config.yaml`` and the ``options`` of the method's context.
    """

    def decorate(cls: M) -> M:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"a method named {name!r} is already registered ({_METHODS[name].__qualname__})")
        cls.name = name
        cls.options_type = options
        _METHODS[name] = cls
        return cls

    return decorate


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests and plug-ins that register one temporarily)."""
    _METHODS.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every registered method name: by each method's ``order``, then in registration order."""
    return tuple(sorted(_METHODS, key=lambda name: _METHODS[name].order))


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ArchcompressError(f"--method {name!r} is not available: use one of {', '.join(method_names())}") from None


def methods_with_options() -> dict[str, type]:
    """Method name -> options dataclass, for every method that has options."""
    return {name: options for name in method_names() if (options := _METHODS[name].options_type) is not None}
