"""Everything that shapes a teacher's compression space, in one place: ratio sets and removal rules."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from archcompress.space.rules import RemovalRules
from archcompress.space.space import DEFAULT_MIN_CHANNELS, DEFAULT_RATIOS, CompressionSpace


@dataclass(frozen=True)
class SpaceOptions:
    """How the compression space is derived from the teacher."""

    ratios: tuple[float, ...] = DEFAULT_RATIOS
    kernel_ratios: tuple[float, ...] | None = None
    min_channels: int = DEFAULT_MIN_CHANNELS
    remove_pooling: bool = True  # False: max-pooling units stay (cheaper students on small inputs)

    def rules(self) -> RemovalRules:
        """The removal rules these options select."""
        return RemovalRules(max_pool=self.remove_pooling)

    def space_of(self, model: nn.Module, input_shape: tuple[int, ...]) -> CompressionSpace:
        """The compression space of ``model`` under these options."""
        return CompressionSpace.from_model(
            model,
            input_shape,
            ratios=self.ratios,
            kernel_ratios=self.kernel_ratios,
            min_channels=self.min_channels,
            rules=self.rules(),
        )
