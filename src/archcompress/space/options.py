"""Everything that shapes a teacher's compression space, in one place: ratio sets and removal rules."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space.rules import DEFAULT_RULES, RemovalRules
from archcompress.space.space import DEFAULT_MIN_CHANNELS, DEFAULT_RATIOS, CompressionSpace

# The kinds of unit a search may remove (``--removable``), by the RemovalRules switch each one sets. The first
# layer and the classifier are never removable from the command line.
REMOVABLE_KINDS = {
    "block": "identity_blocks",  # a whole residual block whose shortcut is the identity
    "body": "body_layers",  # single layers inside a residual block's body
    "max-pool": "max_pool",
    "avg-pool": "avg_pool",  # average pooling with a fixed window
    "linear": "linear",  # hidden fully connected layers
    # convolutions with a stride above 1; an average pooling with the conv's window and stride stays in its place,
    # so the resolution (and a later flatten's size) stays the teacher's
    "strided-conv": "strided_conv",
    "gate": "gates",  # a whole squeeze-and-excitation gate
    "dense-layer": "dense_layers",  # a DenseNet dense layer (its segment leaves the concatenation)
}
# What the N2N authors' code may remove (the ``paper`` preset, and runs made before ``--removable``) ...
N2N_CODE_REMOVABLE = tuple(kind for kind, switch in REMOVABLE_KINDS.items() if getattr(DEFAULT_RULES, switch))
# ... and the default: hidden fully connected layers too. Measured (docs/benchmarks.md, fidelity and quality): on
# the 1-D CNN at 300x the best students drop the hidden Linear, which holds two thirds of the teacher's weights.
DEFAULT_REMOVABLE = (*N2N_CODE_REMOVABLE, "linear")


def parse_removable(text: str) -> tuple[str, ...]:
    """``"linear,max-pool"`` -> ``("linear", "max-pool")``; ``"none"`` -> ``()``; unknown kinds are refused."""
    kinds = () if text.strip().lower() == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    SpaceOptions(removable=kinds).validate()
    return kinds


@dataclass(frozen=True)
class SpaceOptions:
    """How the compression space is derived from the teacher."""

    ratios: tuple[float, ...] = DEFAULT_RATIOS
    kernel_ratios: tuple[float, ...] | None = None
    min_channels: int = DEFAULT_MIN_CHANNELS
    removable: tuple[str, ...] = DEFAULT_REMOVABLE  # kinds of unit a search may remove (see REMOVABLE_KINDS)

    def validate(self) -> None:
        """Refuse an unknown kind of unit, naming the known ones."""
        for kind in self.removable:
            if kind not in REMOVABLE_KINDS:
                raise ArchcompressError(
                    f"--removable {kind!r} is not a kind of unit: use a comma list of {', '.join(REMOVABLE_KINDS)} "
                    "(or none)"
                )

    def rules(self) -> RemovalRules:
        """The removal rules these options select."""
        return RemovalRules(**{switch: kind in self.removable for kind, switch in REMOVABLE_KINDS.items()})

    def space_of(self, model: nn.Module, input_shape: tuple[int, ...]) -> CompressionSpace:
        """The compression space of ``model`` under these options."""
        self.validate()
        return CompressionSpace.from_model(
            model,
            input_shape,
            ratios=self.ratios,
            kernel_ratios=self.kernel_ratios,
            min_channels=self.min_channels,
            rules=self.rules(),
        )
