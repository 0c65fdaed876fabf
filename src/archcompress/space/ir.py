"""Student architecture IR: small frozen layer specs that a JSON file can hold and one builder can instantiate.

A student is an ordered tuple of specs; a :class:`ResidualSpec` holds a body and a shortcut (an empty
shortcut is the identity) whose outputs are added. Shapes are per sample: ``(C, *spatial)`` for feature maps
and ``(F,)`` for flat features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from archcompress.errors import ArchcompressError

IR_VERSION = 1


@dataclass(frozen=True)
class ConvSpec:
    """``nn.Conv1d`` / ``nn.Conv2d``."""

    op: ClassVar[str] = "conv"
    dim: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"

    @property
    def depthwise(self) -> bool:
        """One filter per channel: the output channels are the input channels."""
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels


@dataclass(frozen=True)
class LinearSpec:
    """``nn.Linear`` on flat ``(F,)`` features."""

    op: ClassVar[str] = "linear"
    in_features: int
    out_features: int
    bias: bool = True


@dataclass(frozen=True)
class NormSpec:
    """``nn.BatchNorm1d`` (``dim`` 1: ``(C,)`` or ``(C, L)`` inputs) or ``nn.BatchNorm2d`` (``dim`` 2)."""

    op: ClassVar[str] = "norm"
    dim: int
    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True


@dataclass(frozen=True)
class ChannelNormSpec:
    """LayerNorm over the channels at every position (ConvNeXt's ``permute`` + ``nn.LayerNorm(C)``)."""

    op: ClassVar[str] = "channel_norm"
    num_features: int
    eps: float = 1e-5
    affine: bool = True


@dataclass(frozen=True)
class ScaleSpec:
    """A learned per-channel scale, ``x * gamma`` (ConvNeXt's layer scale)."""

    op: ClassVar[str] = "scale"
    num_features: int


@dataclass(frozen=True)
class ActSpec:
    """An element-wise activation, by name (``relu``, ``gelu`` ...), with its keyword arguments."""

    op: ClassVar[str] = "act"
    fn: str
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class PoolSpec:
    """Max or average pooling with a fixed window."""

    op: ClassVar[str] = "pool"
    dim: int
    mode: str  # "max" | "avg"
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...] = (1,)
    ceil_mode: bool = False
    count_include_pad: bool = True


@dataclass(frozen=True)
class AdaptivePoolSpec:
    """Adaptive max or average pooling to a fixed output size (``None`` keeps that input dimension)."""

    op: ClassVar[str] = "adaptive_pool"
    dim: int
    mode: str  # "max" | "avg"
    output_size: tuple[int | None, ...]


@dataclass(frozen=True)
class MeanSpec:
    """``x.mean(spatial dims)``: global average pooling to ``(C,)``, or ``(C, 1, ...)`` with ``keepdim``."""

    op: ClassVar[str] = "mean"
    keepdim: bool = False


@dataclass(frozen=True)
class SliceSpec:
    """``x.narrow(1, start, length)``: a range of channels (a piece of ``x.chunk`` / ``x.split`` along dim 1)."""

    op: ClassVar[str] = "slice"
    start: int
    length: int


@dataclass(frozen=True)
class ShuffleSpec:
    """ShuffleNet's channel shuffle: ``(B, g * n, ...)`` viewed as ``(B, g, n, ...)``, transposed, flattened."""

    op: ClassVar[str] = "shuffle"
    groups: int


@dataclass(frozen=True)
class DropoutSpec:
    """``nn.Dropout`` (``channel_dim`` 0) or ``nn.Dropout1d/2d`` (whole channels, ``channel_dim`` 1/2)."""

    op: ClassVar[str] = "dropout"
    p: float
    channel_dim: int = 0


@dataclass(frozen=True)
class FlattenSpec:
    """``(C, *spatial) -> (C * prod(spatial),)``, channel-major as ``torch.flatten(x, 1)``."""

    op: ClassVar[str] = "flatten"


LayerSpec: TypeAlias = (
    ConvSpec
    | LinearSpec
    | NormSpec
    | ChannelNormSpec
    | ScaleSpec
    | ActSpec
    | PoolSpec
    | AdaptivePoolSpec
    | MeanSpec
    | SliceSpec
    | ShuffleSpec
    | DropoutSpec
    | FlattenSpec
)


@dataclass(frozen=True)
class ResidualSpec:
    """``body(x) + shortcut(x)`` (``join`` "add") or ``body(x) * shortcut(x)`` (``join`` "mul": a gate).

    An empty shortcut is the identity; body and shortcut may hold residual specs themselves.
    """

    op: ClassVar[str] = "residual"
    body: tuple[Spec, ...]
    shortcut: tuple[Spec, ...] = ()
    join: str = "add"


Spec: TypeAlias = LayerSpec | ResidualSpec

SPEC_TYPES: dict[str, type[Any]] = {
    cls.op: cls
    for cls in (
        ConvSpec,
        LinearSpec,
        NormSpec,
        ChannelNormSpec,
        ScaleSpec,
        ActSpec,
        PoolSpec,
        AdaptivePoolSpec,
        MeanSpec,
        SliceSpec,
        ShuffleSpec,
        DropoutSpec,
        FlattenSpec,
        ResidualSpec,
    )
}


@dataclass(frozen=True)
class StudentArch:
    """A whole student: the input shape it expects and its ordered layers."""

    input_shape: tuple[int, ...]
    layers: tuple[Spec, ...]
    version: int = field(default=IR_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists, numbers, strings)."""
        return {
            "version": self.version,
            "input_shape": list(self.input_shape),
            "layers": [spec_to_dict(s) for s in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentArch:
        """Inverse of :meth:`to_dict`; fails clearly on a newer or malformed file."""
        version = data.get("version")
        if version != IR_VERSION:
            raise ArchcompressError(
                f"student architecture version {version!r} is not supported (this archcompress reads "
                f"version {IR_VERSION}): load it with the archcompress version that wrote it"
            )
        try:
            return cls(
                input_shape=tuple(int(d) for d in data["input_shape"]),
                layers=tuple(spec_from_dict(s) for s in data["layers"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchcompressError(
                f"malformed student architecture ({type(exc).__name__}: {exc}): the arch.json must be "
                "written by archcompress.save_student"
            ) from exc


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """One spec as a JSON-able dict with its ``op`` name first."""
    out: dict[str, Any] = {"op": spec.op}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if isinstance(spec, ResidualSpec) and f.name == "join":
            out[f.name] = value
        elif isinstance(spec, ResidualSpec):
            out[f.name] = [spec_to_dict(s) for s in value]
        elif f.name == "kwargs":
            out[f.name] = {k: v for k, v in value}
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Inverse of :func:`spec_to_dict`."""
    fields = dict(data)
    op = fields.pop("op")
    cls = SPEC_TYPES.get(op)
    if cls is None:
        raise ValueError(f"unknown layer op {op!r}")
    if cls is ResidualSpec:
        if fields.get("join", "add") not in ("add", "mul", "cat"):
            raise ValueError(f"unknown join {fields['join']!r}")
        return ResidualSpec(
            body=tuple(spec_from_dict(s) for s in fields["body"]),
            shortcut=tuple(spec_from_dict(s) for s in fields.get("shortcut", [])),
            join=str(fields.get("join", "add")),  # files written before gates existed hold additions only
        )
    if cls is ActSpec:
        return ActSpec(fn=fields["fn"], kwargs=tuple(sorted(fields.get("kwargs", {}).items())))
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
