"""The search baselines: ``--method random`` and ``--method uniform``."""

from __future__ import annotations

from dataclasses import dataclass

from archcompress.methods.base import Method
from archcompress.methods.registry import register_method
from archcompress.search import RandomSearch, Search
from archcompress.search.uniform import UniformSearch


@register_method("random")
class RandomMethod(Method):
    """Random valid candidates from the same space, evaluated the same way."""

    order = 2
    summary = "random search over the same space (a baseline)"

    def make_search(self) -> Search:
        return RandomSearch(self.context.state.space, self.context.config.seed)


@dataclass(frozen=True)
class UniformOptions:
    """Settings of the uniform baseline."""

    depth: bool = False  # also cut depth uniformly (every k-th layer), crossed with the width multipliers


@register_method("uniform", UniformOptions)
class UniformMethod(Method):
    """One width multiplier for every layer (optionally crossed with uniform depth cuts)."""

    order = 3
    summary = "one width multiplier for every layer (a baseline)"
    own_flags = ("uniform-depth",)

    def make_search(self) -> Search:
        config = self.context.config
        return UniformSearch(self.context.state.space, config.seed, config.target, self.options.depth,
                             max(1, config.workers))  # fmt: skip
