"""Per-layer-type surgery: one handler per spec type, looked up in :data:`HANDLERS`.

A handler knows how to read its spec from a teacher module or functional call, infer output shapes, count
parameters and MACs, resize the spec for a candidate, build the module and copy inherited weights. Adding a
layer type means adding one spec in ``ir.py`` and one handler here.

Shapes are per sample: ``(C, *spatial)`` or ``(F,)``. MACs are multiply-accumulates for one sample:
conv = output elements x in_channels / groups x kernel area, linear = in x out; everything else counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archcompress.space.ir import (
    ActSpec,
    AdaptivePoolSpec,
    ChannelNormSpec,
    ConvSpec,
    DropoutSpec,
    FlattenSpec,
    LayerSpec,
    LinearSpec,
    MeanSpec,
    NormSpec,
    PoolSpec,
    ScaleSpec,
    ShuffleSpec,
    SliceSpec,
)

Shape = tuple[int, ...]
S = TypeVar("S", bound=LayerSpec)


class Unsupported(Exception):
    """A module or call that the space cannot represent; the tracer adds where it happened."""


class ShapeError(Exception):
    """A shape that cannot exist (a size below 1, mismatched channels); the message is the reason."""


def _tuple(value: Any, dim: int) -> tuple[int, ...]:
    """Normalise an int-or-sequence size argument to a ``dim``-tuple of ints."""
    if isinstance(value, int):
        return (value,) * dim
    values = tuple(int(v) for v in value)
    return values * dim if len(values) == 1 else values


def _bind(
    args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Map a functional call's positional + keyword arguments (input tensor excluded) to parameter names."""
    bound = dict(defaults)
    bound.update(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


def tensor_attr(module: nn.Module, name: str) -> Tensor:
    """A parameter or buffer of a module, detached."""
    value = getattr(module, name)
    assert isinstance(value, Tensor), f"{type(module).__name__}.{name} is not a tensor"
    return value.detach()


def _check_positive(shape: Shape, what: str) -> Shape:
    if any(d < 1 for d in shape):
        raise ShapeError(f"{what} would output shape {shape}: a size below 1")
    return shape


def _window_len(length: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """Output length of a sliding window, with PyTorch's rule that a ceil-mode window may not start in padding."""
    span = length + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + pad:
        out -= 1
    return out


class Handler(Generic[S]):
    """Behaviour of one layer type; the defaults fit parameter-free, shape-preserving layers."""

    spec_type: ClassVar[type]
    modules: ClassVar[tuple[type[nn.Module], ...]] = ()
    functions: ClassVar[tuple[Callable[..., Any], ...]] = ()
    methods: ClassVar[tuple[str, ...]] = ()

    def from_module(self, module: nn.Module) -> S:
        """Spec of a teacher module of one of :attr:`modules`."""
        raise Unsupported(f"{type(module).__name__} modules")

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> S:
        """Spec of a functional call; ``args`` excludes the input tensor."""
        raise Unsupported(f"the call {getattr(target, '__name__', target)}")

    def produces(self, spec: S) -> bool:
        """Whether the output channels are new (a weighted layer), not the input channels passed through."""
        return False

    def fixes_channels(self, spec: S) -> bool:
        """Whether the channels in and out must keep the teacher's width (grouped convs, slices, shuffles)."""
        return False

    def out_shape(self, spec: S, shape: Shape) -> Shape:
        """Output shape for a per-sample input shape; raises :class:`ShapeError`."""
        return shape

    def params(self, spec: S) -> int:
        """Number of trainable parameters."""
        return 0

    def macs(self, spec: S, in_shape: Shape, out_shape: Shape) -> int:
        """Multiply-accumulates for one sample."""
        return 0

    def resize(self, spec: S, in_features: int, out_channels: int, kernel: int | None) -> S:
        """The spec with new input features, output channels and (square) kernel size."""
        return spec

    def build(self, spec: S) -> nn.Module:
        """A fresh module for the spec."""
        raise NotImplementedError

    def inherit(self, spec: S, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        """State dict for the student module: the teacher's entries at the kept input/output indices."""
        return {}


class ConvHandler(Handler[ConvSpec]):
    spec_type = ConvSpec
    modules = (nn.Conv1d, nn.Conv2d)

    def from_module(self, module: nn.Module) -> ConvSpec:
        assert isinstance(module, nn.Conv1d | nn.Conv2d)
        dim = 1 if isinstance(module, nn.Conv1d) else 2
        kernel = _tuple(module.kernel_size, dim)
        dilation = _tuple(module.dilation, dim)
        padding: tuple[int, ...]
        if module.padding == "valid":
            padding = (0,) * dim
        elif module.padding == "same":
            if any((d * (k - 1)) % 2 for k, d in zip(kernel, dilation, strict=True)):
                raise Unsupported("padding='same' with an even kernel span (asymmetric padding)")
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        else:
            padding = _tuple(module.padding, dim)
        return ConvSpec(
            dim=dim,
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            kernel=kernel,
            stride=_tuple(module.stride, dim),
            padding=padding,
            dilation=dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )

    def produces(self, spec: ConvSpec) -> bool:
        return not spec.depthwise

    def fixes_channels(self, spec: ConvSpec) -> bool:
        return spec.groups > 1 and not spec.depthwise  # widths must stay divisible by the group count

    def out_shape(self, spec: ConvSpec, shape: Shape) -> Shape:
        if len(shape) != spec.dim + 1 or shape[0] != spec.in_channels:
            raise ShapeError(f"a {spec.dim}-D conv for {spec.in_channels} channels gets input {shape}")
        spatial = tuple(
            _window_len(n, k, s, p, d, False)
            for n, k, s, p, d in zip(shape[1:], spec.kernel, spec.stride, spec.padding, spec.dilation, strict=True)
        )
        return _check_positive((spec.out_channels, *spatial), f"conv {spec.kernel} on {shape}")

    def params(self, spec: ConvSpec) -> int:
        weight = spec.out_channels * (spec.in_channels // spec.groups) * math.prod(spec.kernel)
        return weight + (spec.out_channels if spec.bias else 0)

    def macs(self, spec: ConvSpec, in_shape: Shape, out_shape: Shape) -> int:
        # each output element: in_channels / groups input channels x kernel area
        return math.prod(out_shape) * (spec.in_channels // spec.groups) * math.prod(spec.kernel)

    def resize(self, spec: ConvSpec, in_features: int, out_channels: int, kernel: int | None) -> ConvSpec:
        groups = spec.groups
        if spec.depthwise:
            groups = out_channels = in_features  # one filter per (kept) channel
        if kernel is None or kernel == max(spec.kernel):
            new_kernel, padding = spec.kernel, spec.padding
        else:
            # a shrunk kernel keeps the teacher's centre; padding drops by the same margin so that
            # (size + 2 * padding - kernel) and hence the output size stay the same where possible
            new_kernel = (kernel,) * spec.dim
            padding = tuple(max(0, p - (k - kernel) // 2) for p, k in zip(spec.padding, spec.kernel, strict=True))
        return ConvSpec(
            dim=spec.dim,
            in_channels=in_features,
            out_channels=out_channels,
            kernel=new_kernel,
            stride=spec.stride,
            padding=padding,
            dilation=spec.dilation,
            groups=groups,
            bias=spec.bias,
            padding_mode=spec.padding_mode,
        )

    def build(self, spec: ConvSpec) -> nn.Module:
        conv = nn.Conv1d if spec.dim == 1 else nn.Conv2d
        return conv(
            spec.in_channels,
            spec.out_channels,
            spec.kernel,  # type: ignore[arg-type]
            stride=spec.stride,  # type: ignore[arg-type]
            padding=spec.padding,  # type: ignore[arg-type]
            dilation=spec.dilation,  # type: ignore[arg-type]
            groups=spec.groups,
            bias=spec.bias,
            padding_mode=spec.padding_mode,  # type: ignore[arg-type]
        )

    def inherit(self, spec: ConvSpec, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        weight = tensor_attr(teacher, "weight")  # (C_out, C_in / groups, *kernel)
        if weight.dim() == 2:  # a Linear on channels-last features is a 1x1 conv: (out, in) -> (out, in, 1, ...)
            weight = weight.reshape(*weight.shape, *spec.kernel)
        weight = weight.index_select(0, out_idx)
        if spec.groups == 1:
            weight = weight.index_select(1, in_idx)
        # depthwise: (C, 1, *k), already selected by out_idx == in_idx; other groups are never resized
        for axis, (k_t, k_s) in enumerate(zip(weight.shape[2:], spec.kernel, strict=True), start=2):
            weight = weight.narrow(axis, (k_t - k_s) // 2, k_s)  # centre crop of a shrunk kernel
        state = {"weight": weight.clone()}
        if spec.bias:
            state["bias"] = tensor_attr(teacher, "bias").index_select(0, out_idx).clone()
        return state


class LinearHandler(Handler[LinearSpec]):
    spec_type = LinearSpec
    modules = (nn.Linear,)

    def from_module(self, module: nn.Module) -> LinearSpec:
        assert isinstance(module, nn.Linear)
        return LinearSpec(module.in_features, module.out_features, module.bias is not None)

    def produces(self, spec: LinearSpec) -> bool:
        return True

    def out_shape(self, spec: LinearSpec, shape: Shape) -> Shape:
        if shape != (spec.in_features,):
            raise ShapeError(f"a linear layer for {spec.in_features} features gets input {shape}")
        return (spec.out_features,)

    def params(self, spec: LinearSpec) -> int:
        return spec.in_features * spec.out_features + (spec.out_features if spec.bias else 0)

    def macs(self, spec: LinearSpec, in_shape: Shape, out_shape: Shape) -> int:
        return spec.in_features * spec.out_features

    def resize(self, spec: LinearSpec, in_features: int, out_channels: int, kernel: int | None) -> LinearSpec:
        return LinearSpec(in_features, out_channels, spec.bias)

    def build(self, spec: LinearSpec) -> nn.Module:
        return nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)

    def inherit(self, spec: LinearSpec, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        weight = tensor_attr(teacher, "weight").index_select(0, out_idx).index_select(1, in_idx)  # (out, in)
        state = {"weight": weight.clone()}
        if spec.bias:
            state["bias"] = tensor_attr(teacher, "bias").index_select(0, out_idx).clone()
        return state


class NormHandler(Handler[NormSpec]):
    spec_type = NormSpec
    modules = (nn.BatchNorm1d, nn.BatchNorm2d)

    def from_module(self, module: nn.Module) -> NormSpec:
        assert isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
        return NormSpec(
            dim=1 if isinstance(module, nn.BatchNorm1d) else 2,
            num_features=module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )

    def out_shape(self, spec: NormSpec, shape: Shape) -> Shape:
        ranks = (1, 2) if spec.dim == 1 else (3,)
        if len(shape) not in ranks or shape[0] != spec.num_features:
            raise ShapeError(f"batch norm over {spec.num_features} features gets input {shape}")
        return shape

    def params(self, spec: NormSpec) -> int:
        return 2 * spec.num_features if spec.affine else 0

    def resize(self, spec: NormSpec, in_features: int, out_channels: int, kernel: int | None) -> NormSpec:
        return NormSpec(spec.dim, in_features, spec.eps, spec.momentum, spec.affine, spec.track_running_stats)

    def build(self, spec: NormSpec) -> nn.Module:
        norm = nn.BatchNorm1d if spec.dim == 1 else nn.BatchNorm2d
        return norm(
            spec.num_features,
            eps=spec.eps,
            momentum=spec.momentum,
            affine=spec.affine,
            track_running_stats=spec.track_running_stats,
        )

    def inherit(self, spec: NormSpec, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(teacher, name, None) is not None:
                state[name] = tensor_attr(teacher, name).index_select(0, in_idx).clone()
        if getattr(teacher, "num_batches_tracked", None) is not None:
            state["num_batches_tracked"] = tensor_attr(teacher, "num_batches_tracked").clone()
        return state


class ChannelLayerNorm(nn.Module):
    """LayerNorm over dim 1 of ``(B, C, *spatial)`` or ``(B, C)``, computed channels-last as ConvNeXt does."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def reset_parameters(self) -> None:
        if self.weight is not None and self.bias is not None:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.movedim(1, -1), (self.num_features,), self.weight, self.bias, self.eps)
        return y.movedim(-1, 1)


class ChannelScale(nn.Module):
    """``x * weight`` per channel of ``(B, C, *spatial)``."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(-1, *((1,) * (x.dim() - 2)))


class ChannelNormHandler(Handler[ChannelNormSpec]):
    """ConvNeXt's LayerNorm on channels: ``nn.LayerNorm(C)`` after a channels-last permute, or ``LayerNorm2d``.

    The tracer reads channels-last stretches (``permute(0, 2, 3, 1)`` ... ``permute(0, 3, 1, 2)``) as their
    channels-first equivalents, so students carry no permutes.
    """

    spec_type = ChannelNormSpec
    modules = (nn.LayerNorm,)

    def from_module(self, module: nn.Module) -> ChannelNormSpec:
        assert isinstance(module, nn.LayerNorm)
        if len(module.normalized_shape) != 1:
            raise Unsupported("a LayerNorm over more than the channels")
        return ChannelNormSpec(module.normalized_shape[0], module.eps, module.elementwise_affine)

    def out_shape(self, spec: ChannelNormSpec, shape: Shape) -> Shape:
        if shape[0] != spec.num_features:  # (C, *spatial) or flat (C,) features
            raise ShapeError(f"a LayerNorm over {spec.num_features} channels gets input {shape}")
        return shape

    def params(self, spec: ChannelNormSpec) -> int:
        return 2 * spec.num_features if spec.affine else 0

    def resize(self, spec: ChannelNormSpec, in_features: int, out_channels: int, kernel: int | None) -> ChannelNormSpec:
        return ChannelNormSpec(in_features, spec.eps, spec.affine)

    def build(self, spec: ChannelNormSpec) -> nn.Module:
        return ChannelLayerNorm(spec.num_features, spec.eps, spec.affine)

    def inherit(self, spec: ChannelNormSpec, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        if not spec.affine:
            return {}
        return {n: tensor_attr(teacher, n).index_select(0, in_idx).clone() for n in ("weight", "bias")}


class ScaleHandler(Handler[ScaleSpec]):
    """A per-channel learned scale (``x * gamma`` with a ``(C, 1, 1)`` or channels-last ``(C,)`` parameter)."""

    spec_type = ScaleSpec

    def out_shape(self, spec: ScaleSpec, shape: Shape) -> Shape:
        if len(shape) < 2 or shape[0] != spec.num_features:
            raise ShapeError(f"a scale of {spec.num_features} channels gets input {shape}")
        return shape

    def params(self, spec: ScaleSpec) -> int:
        return spec.num_features

    def resize(self, spec: ScaleSpec, in_features: int, out_channels: int, kernel: int | None) -> ScaleSpec:
        return ScaleSpec(in_features)

    def build(self, spec: ScaleSpec) -> nn.Module:
        return ChannelScale(spec.num_features)

    def inherit(self, spec: ScaleSpec, teacher: nn.Module, in_idx: Tensor, out_idx: Tensor) -> dict[str, Tensor]:
        return {"weight": tensor_attr(teacher, "weight").reshape(-1).index_select(0, in_idx).clone()}


# name -> (module class, keyword arguments with their defaults); the defaults make specs canonical
ACTIVATIONS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "relu": (nn.ReLU, {}),
    "relu6": (nn.ReLU6, {}),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": 0.01}),
    "elu": (nn.ELU, {"alpha": 1.0}),
    "gelu": (nn.GELU, {"approximate": "none"}),
    "silu": (nn.SiLU, {}),
    "sigmoid": (nn.Sigmoid, {}),
    "tanh": (nn.Tanh, {}),
    "hardswish": (nn.Hardswish, {}),
    "hardsigmoid": (nn.Hardsigmoid, {}),
    "mish": (nn.Mish, {}),
}
_ACT_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.elu: "elu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.sigmoid: "sigmoid",
    torch.sigmoid: "sigmoid",
    F.tanh: "tanh",
    torch.tanh: "tanh",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.mish: "mish",
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh"}


class ActHandler(Handler[ActSpec]):
    spec_type = ActSpec
    modules = tuple(cls for cls, _ in ACTIVATIONS.values())
    functions = tuple(_ACT_FUNCTIONS)
    methods = tuple(_ACT_METHODS)

    def from_module(self, module: nn.Module) -> ActSpec:
        fn = next(name for name, (cls, _) in ACTIVATIONS.items() if type(module) is cls)
        defaults = ACTIVATIONS[fn][1]
        return ActSpec(fn, tuple(sorted((k, getattr(module, k)) for k in defaults)))

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> ActSpec:
        fn = _ACT_METHODS[target] if isinstance(target, str) else _ACT_FUNCTIONS[target]
        defaults = ACTIVATIONS[fn][1]
        # the first positional argument after the input is the slope/alpha where there is one
        bound = _bind(args, kwargs, list(defaults), defaults)
        return ActSpec(fn, tuple(sorted((k, bound[k]) for k in defaults)))

    def build(self, spec: ActSpec) -> nn.Module:
        cls, _ = ACTIVATIONS[spec.fn]
        return cls(**dict(spec.kwargs))


# parameters after kernel_size, in order, of max_pool*d / avg_pool*d (functional and module forms)
_POOL_ARGS = {
    "max": ["stride", "padding", "dilation", "ceil_mode", "return_indices"],
    "avg": ["stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
}


class PoolHandler(Handler[PoolSpec]):
    spec_type = PoolSpec
    modules = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
    functions = (F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d)

    def from_module(self, module: nn.Module) -> PoolSpec:
        mode = "max" if isinstance(module, nn.MaxPool1d | nn.MaxPool2d) else "avg"
        dim = 1 if isinstance(module, nn.MaxPool1d | nn.AvgPool1d) else 2
        fields = {k: getattr(module, k, None) for k in _POOL_ARGS[mode]}
        fields["kernel_size"] = module.kernel_size
        return self._spec(dim, mode, fields)

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> PoolSpec:
        mode = "max" if target in (F.max_pool1d, F.max_pool2d) else "avg"
        dim = 1 if target in (F.max_pool1d, F.avg_pool1d) else 2
        return self._spec(dim, mode, _bind(args, kwargs, ["kernel_size", *_POOL_ARGS[mode]], {}))

    @staticmethod
    def _spec(dim: int, mode: str, a: dict[str, Any]) -> PoolSpec:
        if a.get("return_indices"):
            raise Unsupported("pooling with return_indices=True")
        if a.get("divisor_override") is not None:
            raise Unsupported("average pooling with divisor_override")
        kernel = _tuple(a["kernel_size"], dim)
        stride = a.get("stride")
        return PoolSpec(
            dim=dim,
            mode=mode,
            kernel=kernel,
            stride=kernel if stride is None or stride == [] or stride == () else _tuple(stride, dim),
            padding=_tuple(a.get("padding") or 0, dim),
            dilation=_tuple(a.get("dilation") or 1, dim),
            ceil_mode=bool(a.get("ceil_mode", False)),
            count_include_pad=bool(a.get("count_include_pad", True)) if mode == "avg" else True,
        )

    def out_shape(self, spec: PoolSpec, shape: Shape) -> Shape:
        if len(shape) != spec.dim + 1:
            raise ShapeError(f"a {spec.dim}-D pool gets input {shape}")
        spatial = tuple(
            _window_len(n, k, s, p, d, spec.ceil_mode)
            for n, k, s, p, d in zip(shape[1:], spec.kernel, spec.stride, spec.padding, spec.dilation, strict=True)
        )
        return _check_positive((shape[0], *spatial), f"{spec.mode} pool {spec.kernel} on {shape}")

    def build(self, spec: PoolSpec) -> nn.Module:
        if spec.mode == "max":
            cls: Any = nn.MaxPool1d if spec.dim == 1 else nn.MaxPool2d
            return cls(spec.kernel, spec.stride, spec.padding, spec.dilation, ceil_mode=spec.ceil_mode)
        cls = nn.AvgPool1d if spec.dim == 1 else nn.AvgPool2d
        return cls(spec.kernel, spec.stride, spec.padding, spec.ceil_mode, spec.count_include_pad)


class AdaptivePoolHandler(Handler[AdaptivePoolSpec]):
    spec_type = AdaptivePoolSpec
    modules = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
    functions = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d)

    def from_module(self, module: nn.Module) -> AdaptivePoolSpec:
        if getattr(module, "return_indices", False):
            raise Unsupported("adaptive max pooling with return_indices=True")
        mode = "avg" if isinstance(module, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d) else "max"
        dim = 1 if isinstance(module, nn.AdaptiveAvgPool1d | nn.AdaptiveMaxPool1d) else 2
        return self._spec(dim, mode, module.output_size)

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> AdaptivePoolSpec:
        bound = _bind(args, kwargs, ["output_size", "return_indices"], {})
        if bound.get("return_indices"):
            raise Unsupported("adaptive max pooling with return_indices=True")
        mode = "avg" if target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d) else "max"
        dim = 1 if target in (F.adaptive_avg_pool1d, F.adaptive_max_pool1d) else 2
        return self._spec(dim, mode, bound["output_size"])

    @staticmethod
    def _spec(dim: int, mode: str, size: Any) -> AdaptivePoolSpec:
        sizes = (size,) * dim if size is None or isinstance(size, int) else tuple(size)
        if len(sizes) == 1:
            sizes = sizes * dim
        return AdaptivePoolSpec(dim, mode, tuple(None if s is None else int(s) for s in sizes))

    def out_shape(self, spec: AdaptivePoolSpec, shape: Shape) -> Shape:
        if len(shape) != spec.dim + 1:
            raise ShapeError(f"a {spec.dim}-D adaptive pool gets input {shape}")
        spatial = tuple(n if s is None else s for n, s in zip(shape[1:], spec.output_size, strict=True))
        return _check_positive((shape[0], *spatial), f"adaptive pool on {shape}")

    def build(self, spec: AdaptivePoolSpec) -> nn.Module:
        classes: dict[tuple[str, int], Any] = {
            ("avg", 1): nn.AdaptiveAvgPool1d,
            ("avg", 2): nn.AdaptiveAvgPool2d,
            ("max", 1): nn.AdaptiveMaxPool1d,
            ("max", 2): nn.AdaptiveMaxPool2d,
        }
        size = spec.output_size[0] if spec.dim == 1 else spec.output_size
        return classes[spec.mode, spec.dim](size)


class GlobalMean(nn.Module):
    """``x.mean(spatial dims)``: ``(B, C, *spatial) -> (B, C)``, or ``(B, C, 1, ...)`` with ``keepdim``."""

    def __init__(self, keepdim: bool = False) -> None:
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(tuple(range(2, x.dim())), keepdim=self.keepdim)


class MeanHandler(Handler[MeanSpec]):
    """``x.mean([2, 3])`` / ``torch.mean(x, (2, 3), keepdim)`` over every spatial dimension (MNASNet, ShuffleNet).

    The spec does not record the dimensions: the tracer checks the traced output shape against
    :meth:`out_shape`, which only the mean over exactly the spatial dimensions gives.
    """

    spec_type = MeanSpec
    functions = (torch.mean,)
    methods = ("mean",)

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> MeanSpec:
        bound = _bind(args, kwargs, ["dim", "keepdim"], {"dim": None, "keepdim": False})
        if bound["dim"] is None or bound.get("dtype") is not None:
            raise Unsupported("a mean over all dimensions or with a dtype (use x.mean([2, 3]))")
        return MeanSpec(bool(bound["keepdim"]))

    def out_shape(self, spec: MeanSpec, shape: Shape) -> Shape:
        if len(shape) < 2:
            raise ShapeError(f"a spatial mean gets input {shape} without spatial dimensions")
        return (shape[0], *((1,) * (len(shape) - 1))) if spec.keepdim else (shape[0],)

    def build(self, spec: MeanSpec) -> nn.Module:
        return GlobalMean(spec.keepdim)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's shuffle: ``(B, g * n, *S) -> (B, n * g, *S)``, channel ``i * n + j`` moved to ``j * g + i``."""
    b, c, *spatial = x.shape
    return x.view(b, groups, c // groups, *spatial).transpose(1, 2).reshape(b, c, *spatial)


class ChannelSlice(nn.Module):
    """``x.narrow(1, start, length)``: channels ``start ... start + length - 1``."""

    def __init__(self, start: int, length: int) -> None:
        super().__init__()
        self.start, self.length = start, length

    def forward(self, x: Tensor) -> Tensor:
        return x.narrow(1, self.start, self.length)


class ChannelShuffle(nn.Module):
    """:func:`channel_shuffle` as a module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)


class SliceHandler(Handler[SliceSpec]):
    """A channel range (the tracer turns ``x.chunk(k, 1)`` / ``x.split(s, 1)`` pieces into ``narrow`` calls).

    Its channels are a new, fixed-width variable: a slice of shrunk channels would select other channels.
    """

    spec_type = SliceSpec
    functions = (torch.narrow,)

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> SliceSpec:
        bound = _bind(args, kwargs, ["dim", "start", "length"], {})
        if bound["dim"] != 1:
            raise Unsupported("a slice along a dimension other than the channels")
        return SliceSpec(int(bound["start"]), int(bound["length"]))

    def produces(self, spec: SliceSpec) -> bool:
        return True

    def fixes_channels(self, spec: SliceSpec) -> bool:
        return True

    def out_shape(self, spec: SliceSpec, shape: Shape) -> Shape:
        if len(shape) < 2 or shape[0] < spec.start + spec.length:
            raise ShapeError(f"channels {spec.start}..{spec.start + spec.length - 1} of input {shape}")
        return (spec.length, *shape[1:])

    def build(self, spec: SliceSpec) -> nn.Module:
        return ChannelSlice(spec.start, spec.length)


class ShuffleHandler(Handler[ShuffleSpec]):
    """Channel shuffle (the tracer recognises ShuffleNet's view-transpose-view); fixed widths, like a slice."""

    spec_type = ShuffleSpec
    functions = (channel_shuffle,)

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> ShuffleSpec:
        return ShuffleSpec(int(_bind(args, kwargs, ["groups"], {})["groups"]))

    def produces(self, spec: ShuffleSpec) -> bool:
        return True

    def fixes_channels(self, spec: ShuffleSpec) -> bool:
        return True

    def out_shape(self, spec: ShuffleSpec, shape: Shape) -> Shape:
        if len(shape) < 2 or shape[0] % spec.groups:
            raise ShapeError(f"a channel shuffle in {spec.groups} groups gets input {shape}")
        return shape

    def build(self, spec: ShuffleSpec) -> nn.Module:
        return ChannelShuffle(spec.groups)


class DropoutHandler(Handler[DropoutSpec]):
    spec_type = DropoutSpec
    modules = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
    functions = (F.dropout, F.dropout1d, F.dropout2d)

    def from_module(self, module: nn.Module) -> DropoutSpec:
        channel_dim = {nn.Dropout: 0, nn.Dropout1d: 1, nn.Dropout2d: 2}[type(module)]  # type: ignore[index]
        return DropoutSpec(float(module.p), channel_dim)  # type: ignore[arg-type]

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> DropoutSpec:
        bound = _bind(args, kwargs, ["p", "training", "inplace"], {"p": 0.5})
        return DropoutSpec(float(bound["p"]), {F.dropout: 0, F.dropout1d: 1, F.dropout2d: 2}[target])

    def build(self, spec: DropoutSpec) -> nn.Module:
        return (nn.Dropout, nn.Dropout1d, nn.Dropout2d)[spec.channel_dim](spec.p)


class FlattenHandler(Handler[FlattenSpec]):
    """Flatten, ``view`` or ``reshape`` to ``(B, -1)``; the tracer checks the traced shapes agree."""

    spec_type = FlattenSpec
    modules = (nn.Flatten,)
    functions = (torch.flatten,)
    methods = ("flatten", "view", "reshape")

    def from_module(self, module: nn.Module) -> FlattenSpec:
        return FlattenSpec()

    def from_call(self, target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> FlattenSpec:
        return FlattenSpec()

    def out_shape(self, spec: FlattenSpec, shape: Shape) -> Shape:
        return (math.prod(shape),)

    def build(self, spec: FlattenSpec) -> nn.Module:
        return nn.Flatten(1)


HANDLERS: dict[type, Handler[Any]] = {
    h.spec_type: h
    for h in (
        ConvHandler(),
        LinearHandler(),
        NormHandler(),
        ChannelNormHandler(),
        ScaleHandler(),
        ActHandler(),
        PoolHandler(),
        AdaptivePoolHandler(),
        MeanHandler(),
        SliceHandler(),
        ShuffleHandler(),
        DropoutHandler(),
        FlattenHandler(),
    )
}


def handler(spec: LayerSpec) -> Handler[Any]:
    """The handler for a spec."""
    return HANDLERS[type(spec)]


def module_handler(module: nn.Module) -> Handler[Any] | None:
    """The handler that reads this exact module type (subclasses may change ``forward``, so they are traced)."""
    return next((h for h in HANDLERS.values() if type(module) in h.modules), None)


def call_handler(op: str, target: Any) -> Handler[Any] | None:
    """The handler for an fx ``call_function`` target or ``call_method`` name."""
    for h in HANDLERS.values():
        if (op == "call_method" and target in h.methods) or (op == "call_function" and target in h.functions):
            return h
    return None
