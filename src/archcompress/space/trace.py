"""Capture a teacher with ``torch.fx`` and turn its graph into a chain of layers and blocks.

A block is found from the graph alone: a tensor used by exactly two branches that meet again in one
addition (a residual block) or one multiplication (a gate, e.g. squeeze-and-excitation ``x * gate(x)``).
Branches may hold blocks themselves (nested residuals, a gate inside a residual body). For an addition the
branch that is empty (identity) or shorter is the shortcut; for a multiplication the branch whose output
broadcasts (``(C, 1, 1)``) is the gate (the body) and the other one the shortcut. Anything else
(concatenation, data-dependent control flow) is refused with the node, its module path and its source line.
"""

from __future__ import annotations

import math
import operator
import os
import re
import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from archcompress.errors import ArchcompressError
from archcompress.space.handlers import (
    ACTIVATIONS,
    LinearHandler,
    NormHandler,
    Shape,
    ShapeError,
    Unsupported,
    call_handler,
    channel_shuffle,
    handler,
    module_handler,
)
from archcompress.space.ir import (
    ActSpec,
    ChannelNormSpec,
    ConvSpec,
    DropoutSpec,
    FlattenSpec,
    LayerSpec,
    ScaleSpec,
)
from archcompress.space.util import eval_mode

SUPPORTED = (
    "archcompress supports a single-input forward that chains Conv1d/Conv2d, Linear, BatchNorm, activation, "
    "pooling, dropout and flatten/view layers with residual additions (x + f(x), nested too), gates "
    "(x * sigmoid(f(x)), e.g. squeeze-and-excitation) and concatenations along channels (torch.cat([a(x), "
    "b(x)], 1), dense blocks); split/chunk, channel shuffle, permute, LayerNorm and attention are not"
)
_TORCH_DIR = os.path.dirname(torch.__file__)
_RESIDUAL_ADDS = (operator.add, operator.iadd, torch.add)
_GATE_MULS = (operator.mul, operator.imul, torch.mul)
_CONCATS = (torch.cat, torch.concat, torch.concatenate)
_PASS_THROUGH_METHODS = ("contiguous",)
# identities at inference (the teacher is traced in eval mode, and students are plain networks), by
# (module, name) so that torchvision is not imported for them: its stochastic depth is wrapped for fx
_PASS_THROUGH_FUNCTIONS = (("torchvision.ops.stochastic_depth", "stochastic_depth"),)


@dataclass(frozen=True)
class TracedLayer:
    """One teacher layer: its spec, the module holding its weights and its per-sample shapes."""

    spec: LayerSpec
    source: str  # teacher module path ("" for a functional op without weights)
    node: str  # fx node name
    name: str  # module path, or "scope:node" for a functional op
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True)
class TracedBlock:
    """``body(x) + shortcut(x)`` (``join`` "add") or ``body(x) * shortcut(x)`` (``join`` "mul", body = gate).

    An empty shortcut is the identity; body and shortcut may hold blocks themselves.
    """

    body: tuple[TracedItem, ...]
    shortcut: tuple[TracedItem, ...]
    node: str  # the join's node name
    in_shape: Shape
    out_shape: Shape
    join: str = "add"


TracedItem = TracedLayer | TracedBlock


class _Tracer(fx.Tracer):
    """The default tracer (torch.nn modules are leaves) with stack traces recorded for error messages."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True


def trace_model(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[TracedItem, ...]:
    """Trace ``model`` (in eval mode, restored afterwards) for per-sample ``input_shape``."""
    with eval_mode(model):
        tracer = _Tracer()
        try:
            graph = tracer.trace(model)
        except Exception as exc:
            raise ArchcompressError(_trace_failure(exc, tracer)) from exc
        module = fx.GraphModule(model, graph)
        graph.eliminate_dead_code()
        _chain_concatenations(graph)
        module.recompile()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            with torch.no_grad():
                # batch 2 so that the batch dimension cannot be confused with a size-1 feature dimension
                ShapeProp(module).propagate(torch.zeros(2, *input_shape, device=device))
        except Exception as exc:
            raise ArchcompressError(
                f"the model fails on inputs of shape {tuple(input_shape)} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}): pass the input shape the model was built for"
            ) from exc
        _slices_as_narrow(module.graph)
        _shuffles_as_calls(module.graph)
        module.graph.eliminate_dead_code()
        return _GraphReader(module, model).read()


class _GraphReader:
    """Reads a shape-propagated fx graph into :class:`TracedItem` s."""

    def __init__(self, module: fx.GraphModule, root: nn.Module) -> None:
        self.module = module
        self.root = root  # the traced model: fx keeps only bare containers for parameters fetched by path
        self.nodes = list(module.graph.nodes)
        self.used_sources: set[str] = set()
        self.last = _channels_last_nodes(self.nodes)  # tensors laid out (B, *spatial, C) by a permute

    def _shape(self, node: fx.Node) -> Shape:
        """Per-sample shape, channels first: a channels-last ``(*spatial, C)`` is read as ``(C, *spatial)``."""
        shape = _shape(node)
        return (shape[-1], *shape[:-1]) if node in self.last else shape

    def read(self) -> tuple[TracedItem, ...]:
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ArchcompressError(
                f"the model's forward takes {len(inputs)} inputs ({', '.join(n.name for n in inputs)}): {SUPPORTED}"
            )
        output = next(n for n in self.nodes if n.op == "output")
        result = output.args[0]
        if not isinstance(result, fx.Node) or not _is_tensor(result) or len(_shape(result)) != 1:
            raise ArchcompressError(
                f"the model must return one logits tensor of shape (batch, classes): {_where(output)} returns "
                f"something else; {SUPPORTED}"
            )
        items, _, end = self._chain(inputs[0])
        if end.op != "output":
            raise self._error(end, _join_error(end))
        return tuple(items)

    def _chain(self, start: fx.Node) -> tuple[list[TracedItem], fx.Node, fx.Node]:
        """Items computed after ``start`` (already read) up to the first join or the output.

        Returns the items, the last node read (the one feeding the join) and the join (or output) node.
        """
        items: list[TracedItem] = []
        current = start
        while True:
            users = _data_users(current)
            if len(users) >= 2:
                block, current = self._block(current, users)
                items.append(block)
                continue
            if len(users) != 1:
                raise self._error(current, f"a tensor used by {len(users)} operations")
            node = users[0]
            if node.op == "output" or _join_kind(node) is not None:
                return items, current, node
            layer = self._layer(node)
            if layer is not None:
                items.append(layer)
            current = node

    def _branch(self, fork: fx.Node, first: fx.Node) -> tuple[list[TracedItem], fx.Node, fx.Node]:
        """One branch from ``fork`` whose first operation is ``first``: its items, its last node, its join."""
        if first.op == "output":
            raise self._error(fork, "a tensor used by the output and by another operation")
        if _join_kind(first) is not None:
            return [], fork, first
        layer = self._layer(first)
        items: list[TracedItem] = [] if layer is None else [layer]
        rest, last, join = self._chain(first)
        if join.op == "output":
            raise self._error(fork, "a tensor used by the output and by another operation")
        return [*items, *rest], last, join

    def _block(self, fork: fx.Node, users: list[fx.Node]) -> tuple[TracedBlock, fx.Node]:
        """Follow the branches from ``fork`` to the one addition, multiplication or concatenation where they meet.

        A concatenation of k branches becomes k - 1 nested blocks, ``cat(cat(a, b), c)``, which is the same.
        """
        branches = [self._branch(fork, node) for node in users]
        join = branches[0][2]
        operands = _tensor_args(join)
        ends = sorted(id(b[1]) for b in branches)
        if any(b[2] is not join for b in branches) or sorted(id(a) for a in operands) != ends:
            raise self._error(
                fork,
                f"a tensor used by {len(users)} operations whose branches do not meet in one addition, "
                "multiplication or concatenation",
            )
        kind = _join_kind(join)
        if kind != "cat" and len(branches) != 2:
            raise self._error(fork, f"a tensor used by {len(branches)} operations")
        if "alpha" in join.kwargs:
            raise self._error(join, "an addition with alpha")
        ordered = sorted(branches, key=lambda b: operands.index(b[1]))
        if kind == "cat" and join in self.last:
            raise self._error(join, "a concatenation of channels-last features (dim 1 is not the channels there)")
        if kind == "cat":
            block_items, channels = ordered[0][0], self._shape(ordered[0][1])[0]
            for items, last, _ in ordered[1:]:
                channels += self._shape(last)[0]
                out_shape = (channels, *self._shape(join)[1:])
                node = join.name
                block = TracedBlock(tuple(block_items), tuple(items), node, self._shape(fork), out_shape, "cat")
                block_items = [block]
            return block, join
        first, second = ordered
        if kind == "mul":
            # the gate is the branch whose output broadcasts over the other's (SE: (C, 1, 1) * (C, H, W))
            shapes = [self._shape(first[1]), self._shape(second[1])]
            if math.prod(shapes[1]) < math.prod(shapes[0]) or (shapes[0] == shapes[1] and not first[0]):
                first, second = second, first
            gate, value = self._shape(first[1]), self._shape(second[1])
            broadcasts = gate == value or (gate[0] == value[0] and all(d == 1 for d in gate[1:]))
            if not first[0] or len(gate) != len(value) or not broadcasts:
                raise self._error(join, f"a multiplication of shapes {gate} and {value} that is not a channel gate")
        else:
            # the shortcut: an empty branch (identity), else the shorter branch, else the add's second operand
            if not first[0] or (second[0] and len(first[0]) < len(second[0])):
                first, second = second, first
            if not first[0]:
                raise self._error(join, "an addition of a tensor to itself (x + x)")
        block = TracedBlock(
            tuple(first[0]), tuple(second[0]), join.name, self._shape(fork), self._shape(join), kind or "add"
        )
        return block, join

    def _layer(self, node: fx.Node) -> TracedLayer | None:
        """The layer a node computes, ``None`` for identities; checks its shapes against the traced ones."""
        try:
            found = self._param_op(node) or self._spec(node)
            inputs = [n for n in _tensor_args(node) if _param_root(n) is None or found is None]
            if not _is_tensor(node) or len(inputs) != 1 or any(_param_root(n) is not None for n in inputs):
                raise Unsupported(f"{_op_name(node, self.module)} on {len(inputs)} tensors")
            if found is None:
                return None
            spec, source = found
            in_shape, out_shape = self._shape(inputs[0]), self._shape(node)
            try:
                expected = handler(spec).out_shape(spec, in_shape)
            except ShapeError as exc:
                raise Unsupported(f"{_op_name(node, self.module)} ({exc})") from exc
            if expected != out_shape:
                raise Unsupported(
                    f"{_op_name(node, self.module)} mapping {in_shape} to {out_shape} per sample (expected "
                    f"{expected}; flatten/view must give (batch, -1))"
                )
        except Unsupported as exc:
            raise self._error(node, str(exc)) from exc
        return TracedLayer(spec, source, node.name, _layer_name(node), in_shape, out_shape)

    def _param_op(self, node: fx.Node) -> tuple[LayerSpec, str] | None:
        """Ops whose weights are fetched as parameters: ``F.layer_norm(x, (C,), w, b)`` on channels-last
        features (``LayerNorm2d``), ``F.batch_norm`` with a BatchNorm module's tensors (timm's
        ``BatchNormAct2d``), and a per-channel scale ``gamma * x`` (ConvNeXt's layer scale, also as
        ``x.mul(gamma.reshape(1, -1, 1, 1))``)."""
        params = [a for a in _tensor_args(node) if _param_root(a) is not None]
        if not params or node.op not in ("call_function", "call_method"):
            return None
        inputs = [a for a in _tensor_args(node) if _param_root(a) is None]
        roots = [_param_root(p) for p in params]
        owners = {str(r.target).rpartition(".")[0] for r in roots if r is not None}
        if node.target is F.layer_norm and len(inputs) == 1 and inputs[0] in self.last:
            bound: dict[str, Any] = dict(
                zip(("input", "normalized_shape", "weight", "bias", "eps"), node.args, strict=False)
            )
            bound.update(node.kwargs)
            shape = tuple(bound["normalized_shape"])
            weight, bias = bound.get("weight"), bound.get("bias")
            if len(shape) != 1 or len(owners) != 1 or (weight is None) != (bias is None):
                raise Unsupported("F.layer_norm other than over the channels with one module's weight and bias")
            spec = ChannelNormSpec(int(shape[0]), float(bound.get("eps", 1e-5)), weight is not None)
            return spec, self._claim(owners.pop())
        if node.target is F.batch_norm and len(inputs) == 1 and inputs[0] not in self.last and len(owners) == 1:
            owner_path = owners.pop()
            owner = self.root.get_submodule(owner_path)
            if not isinstance(owner, nn.BatchNorm1d | nn.BatchNorm2d):
                raise Unsupported("F.batch_norm with tensors that are not one BatchNorm module's")
            return NormHandler().from_module(owner), self._claim(owner_path)
        if node.target is F.linear and len(inputs) == 1 and len(owners) == 1:
            owner_path = owners.pop()
            linear = self.root.get_submodule(owner_path)
            if not isinstance(linear, nn.Linear):
                raise Unsupported("F.linear with tensors that are not one Linear module's")
            last = inputs[0] in self.last
            dense: LayerSpec = (
                _pointwise(linear, len(_shape(node)) - 1) if last else LinearHandler().from_module(linear)
            )
            return dense, self._claim(owner_path)
        muls = (node.op == "call_function" and node.target in _GATE_MULS) or (
            node.op == "call_method" and node.target in ("mul", "mul_")
        )
        if muls and len(inputs) == 1 and len(params) == 1 and roots[0] is not None:
            # the parameter must broadcast along the channels only: (C, 1, 1), (1, C, 1, 1), or (C,) channels-last
            shape = tuple(int(d) for d in params[0].meta["tensor_meta"].shape)
            rank = len(_shape(inputs[0])) + 1
            channels = self._shape(inputs[0])[0]
            padded = (1,) * (rank - len(shape)) + shape
            axis = rank - 1 if inputs[0] in self.last else 1
            expected = tuple(channels if i == axis else 1 for i in range(rank))
            if padded != expected:
                raise Unsupported(f"a multiplication by a parameter of shape {shape} (not one scale per channel)")
            return ScaleSpec(channels), self._claim(str(roots[0].target))
        return None

    def _claim(self, source: str) -> str:
        """Record that a module (or parameter) path holds a layer's weights; each may be used once."""
        if source in self.used_sources:
            raise Unsupported(f"module {source!r} called twice (shared weights)")
        self.used_sources.add(source)
        return source

    def _spec(self, node: fx.Node) -> tuple[LayerSpec, str] | None:
        """Spec and weight-holding module path of a node; ``None`` for an identity."""
        if _layout_permute(node) is not None:
            return None  # channels-last stretches are read as their channels-first equivalents
        last = any(a in self.last for a in _tensor_args(node))
        if last and not self._channel_wise(node):
            raise Unsupported(f"{_op_name(node, self.module)} on channels-last features (after a permute)")
        if node.op == "call_module":
            module = self.module.get_submodule(str(node.target))
            if type(module) is nn.Identity:
                return None
            if isinstance(module, nn.LayerNorm) and not last and len(_shape(node)) > 1:
                # channels-first (C, H, W): LayerNorm(W) would normalise the width, not the channels
                raise Unsupported("LayerNorm over the last dimension of channels-first features")
            if last and type(module) is nn.Linear:
                return _pointwise(module, len(_shape(node)) - 1), self._claim(str(node.target))
            found = module_handler(module)
            if found is None:
                raise Unsupported(_op_name(node, self.module))
            source = ""
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                source = self._claim(str(node.target))
            return found.from_module(module), source
        if node.op in ("call_function", "call_method"):
            if node.op == "call_method" and node.target in _PASS_THROUGH_METHODS:
                return None
            if node.op == "call_function" and _qualified(node.target) in _PASS_THROUGH_FUNCTIONS:
                return None
            found = call_handler(node.op, node.target)
            if found is None:
                raise Unsupported(_op_name(node, self.module))
            if any(isinstance(a, fx.Node) for a in node.args[1:]) and found.spec_type is not FlattenSpec:
                raise Unsupported(f"{_op_name(node, self.module)} with arguments computed from tensors")
            return found.from_call(node.target, node.args[1:], dict(node.kwargs)), ""
        raise Unsupported(_op_name(node, self.module))

    def _error(self, node: fx.Node, what: str) -> ArchcompressError:
        return ArchcompressError(f"cannot compress this model: {what} at {_where(node)} is not supported; {SUPPORTED}")

    def _channel_wise(self, node: fx.Node) -> bool:
        """Ops that mean the same on channels-last features: LayerNorm/Linear over the channels, element-wise
        activations and dropout, identities."""
        if node.op == "call_module":
            module = self.module.get_submodule(str(node.target))
            return type(module) in (nn.LayerNorm, nn.Linear, nn.Identity, nn.Dropout) or type(module) in tuple(
                cls for cls, _ in ACTIVATIONS.values()
            )
        if node.op in ("call_function", "call_method"):
            found = call_handler(node.op, node.target)
            if node.op == "call_method" and node.target in _PASS_THROUGH_METHODS:
                return True
            return found is not None and found.spec_type in (ActSpec, DropoutSpec)
        return False


def _layout_permute(node: fx.Node) -> bool | None:
    """True for a permute to channels-last ``(0, 2, ..., 1)``, False for one back ``(0, r - 1, 1, ...)``."""
    is_permute = (node.op == "call_function" and node.target is torch.permute) or (
        node.op == "call_method" and node.target == "permute"
    )
    if not is_permute or not node.args:
        return None
    rest = node.args[1:] if node.op == "call_method" else node.args[1:2]
    dims = tuple(rest[0]) if len(rest) == 1 and isinstance(rest[0], list | tuple) else tuple(rest)
    given: Any = node.kwargs.get("dims")
    if given is not None:
        dims = tuple(given)
    rank = len(dims)
    if rank < 3 or not all(isinstance(d, int) for d in dims):
        return None
    if dims == (0, *range(2, rank), 1):
        return True
    if dims == (0, rank - 1, *range(1, rank - 1)):
        return False
    return None


def _channels_last_nodes(nodes: list[fx.Node]) -> set[fx.Node]:
    """Tensors between a permute to channels-last and the permute back (the layout follows the first input)."""
    last: set[fx.Node] = set()
    for node in nodes:
        inputs = _tensor_args(node) if node.op != "get_attr" else []
        data = [a for a in inputs if _param_root(a) is None]
        was_last = bool(data) and data[0] in last
        to_last = _layout_permute(node)
        if to_last is not None and to_last != was_last:
            if to_last:
                last.add(node)
            continue
        if was_last and node.op != "output":
            last.add(node)
    return last


def _pointwise(linear: nn.Linear, dim: int) -> ConvSpec:
    """A Linear on channels-last features as the 1x1 conv it is on channels-first ones."""
    ones = (1,) * dim
    return ConvSpec(
        dim=dim,
        in_channels=linear.in_features,
        out_channels=linear.out_features,
        kernel=ones,
        stride=ones,
        padding=(0,) * dim,
        dilation=ones,
        bias=linear.bias is not None,
    )


_PARAM_VIEWS = ("reshape", "view", "unsqueeze", "squeeze", "flatten")


def _param_root(node: fx.Node) -> fx.Node | None:
    """The parameter (``get_attr``) a node is, or is a reshaped view of (``gamma.reshape(1, -1, 1, 1)``)."""
    while node.op != "get_attr":
        views = (node.op == "call_method" and node.target in _PARAM_VIEWS) or (
            node.op == "call_function" and node.target in (torch.reshape, torch.unsqueeze, torch.squeeze)
        )
        if not views or not node.args or not isinstance(node.args[0], fx.Node):
            return None
        node = node.args[0]
    return node


def _is_tensor(node: fx.Node) -> bool:
    return isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def _shape(node: fx.Node) -> Shape:
    """Per-sample shape (batch dimension dropped) of a tensor node."""
    shape = tuple(int(d) for d in node.meta["tensor_meta"].shape)
    if not shape or shape[0] != 2:
        raise ArchcompressError(
            f"{_where(node)} changes the batch dimension (traced shape {shape} for a batch of 2): {SUPPORTED}"
        )
    return shape[1:]


def _data_users(node: fx.Node) -> list[fx.Node]:
    """Users that consume ``node``'s values (``x.size(0)``, ``x.shape`` and ``x.dim()`` only read metadata)."""
    return [u for u in node.users if not _reads_metadata(u)]


def _reads_metadata(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in ("size", "dim")
    return node.op == "call_function" and node.target is getattr and node.args[1:2] in (("shape",), ("ndim",))


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    """Tensor-valued node arguments (including parameters fetched with ``get_attr``), in order."""
    found: list[fx.Node] = []

    def visit(arg: fx.Node) -> fx.Node:
        if _is_tensor(arg):
            found.append(arg)
        return arg

    fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def _join_kind(node: fx.Node) -> str | None:
    """``"add"``, ``"mul"`` or ``"cat"`` for an operation where branches can meet, else None."""
    operands = _tensor_args(node)
    if any(_param_root(a) is not None for a in operands):
        return None  # a parameter operand (e.g. a layer scale) is an op of its own, not a join
    call = node.op == "call_function"
    if call and node.target in _CONCATS and len(operands) >= 2:
        return "cat" if _channel_dim(node) else None
    if len(operands) != 2:
        return None
    if (call and node.target in _RESIDUAL_ADDS) or (node.op == "call_method" and node.target in ("add", "add_")):
        return "add"
    if (call and node.target in _GATE_MULS) or (node.op == "call_method" and node.target in ("mul", "mul_")):
        return "mul"
    return None


def _qualified(target: Any) -> tuple[str, str]:
    return getattr(target, "__module__", None) or "", getattr(target, "__name__", "")


def _join_error(node: fx.Node) -> str:
    what = {"add": "an addition", "mul": "a multiplication"}.get(_join_kind(node) or "", "a concatenation")
    return f"{what} that is not the join of branches from one tensor (e.g. x + x)"


def _cat_args(node: fx.Node) -> tuple[list[Any], Any]:
    """The tensor list and the dimension of a ``torch.cat`` call."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return list(tensors) if isinstance(tensors, list | tuple) else [tensors], dim


def _channel_dim(node: fx.Node) -> bool:
    """Whether a concatenation joins along channels (dim 1 of a (B, C, *spatial) result)."""
    _, dim = _cat_args(node)
    meta = node.meta.get("tensor_meta")
    if not isinstance(dim, int) or not isinstance(meta, TensorMetadata) or len(meta.shape) < 3:
        return False
    return dim % len(meta.shape) == 1


_SPLITS = {("call_function", torch.chunk), ("call_function", torch.split), ("call_method", "chunk")}
_SPLITS |= {("call_method", "split"), ("call_function", torch.tensor_split)}


def _slices_as_narrow(graph: fx.Graph) -> None:
    """Turn the pieces of a channel split (``x.chunk(2, dim=1)[i]``, ``torch.split(x, s, 1)[i]``) into
    ``torch.narrow(x, 1, start, length)`` calls, using the traced piece shapes: the split's tuple becomes
    one fork whose branches start with a channel slice."""
    for node in list(graph.nodes):
        if (node.op, node.target) not in _SPLITS or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        pieces = node.meta.get("tensor_meta")
        source = node.args[0]
        if not isinstance(dim, int) or not isinstance(pieces, tuple) or not _is_tensor(source):
            continue
        rank = len(source.meta["tensor_meta"].shape)
        if dim % rank != 1 or not all(u.op == "call_function" and u.target is operator.getitem for u in node.users):
            continue
        starts = [0]
        for piece in pieces:
            starts.append(starts[-1] + int(piece.shape[1]))
        for user in list(node.users):
            index = user.args[1]
            if not isinstance(index, int):
                break
            with graph.inserting_before(user):
                narrow = graph.call_function(
                    torch.narrow, (source, 1, starts[index], starts[index + 1] - starts[index])
                )
            narrow.meta = dict(user.meta)
            user.replace_all_uses_with(narrow)
            graph.erase_node(user)


def _shuffles_as_calls(graph: fx.Graph) -> None:
    """Recognise ShuffleNet's channel shuffle, ``x.view(B, g, C // g, *S).transpose(1, 2)[.contiguous()]
    .view(B, C, *S)``, and replace it with one :func:`channel_shuffle` call."""
    for node in list(graph.nodes):
        transposes = (node.op == "call_function" and node.target is torch.transpose) or (
            node.op == "call_method" and node.target == "transpose"
        )
        if not transposes or tuple(node.args[1:3]) != (1, 2) or not isinstance(node.args[0], fx.Node):
            continue
        split, end = node.args[0], node
        if len(end.users) == 1 and next(iter(end.users)).op == "call_method":
            following = next(iter(end.users))
            end = following if following.target == "contiguous" else end
        if len(end.users) != 1:
            continue
        merge = next(iter(end.users))
        if not (split.op == "call_method" and split.target in ("view", "reshape")) or not isinstance(
            split.args[0], fx.Node
        ):
            continue
        if not (merge.op == "call_method" and merge.target in ("view", "reshape")) or not _is_tensor(merge):
            continue
        source = split.args[0]
        before, grouped = source.meta["tensor_meta"].shape, split.meta["tensor_meta"].shape
        after = merge.meta["tensor_meta"].shape
        if (
            len(grouped) != len(before) + 1
            or tuple(after) != tuple(before)
            or grouped[1] * grouped[2] != before[1]
            or tuple(grouped[3:]) != tuple(before[2:])
        ):
            continue
        with graph.inserting_before(merge):
            shuffle = graph.call_function(channel_shuffle, (source, int(grouped[1])))
        shuffle.meta = dict(merge.meta)
        merge.replace_all_uses_with(shuffle)
        graph.erase_node(merge)


def _chain_concatenations(graph: fx.Graph) -> None:
    """Rewrite DenseNet's concatenations as a chain, so that each is the join of one fork.

    A dense block concatenates all earlier outputs again for every layer: ``cat([x0])``, ``cat([x0, n1])``,
    ``cat([x0, n1, n2])``... A one-tensor concatenation is that tensor, and a concatenation whose operands
    but the last are those of an earlier one is ``cat([earlier, last])``: the same values, as a fork-join.
    """
    seen: dict[tuple[Any, ...], fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _CONCATS:
            continue
        tensors, dim = _cat_args(node)
        if not all(isinstance(t, fx.Node) for t in tensors):
            continue
        if len(tensors) == 1:
            node.replace_all_uses_with(tensors[0])
            graph.erase_node(node)
            continue
        earlier = seen.get((*tensors[:-1], dim))
        if earlier is not None:
            with graph.inserting_before(node):
                chained = graph.call_function(torch.cat, ([earlier, tensors[-1]], dim))
            chained.meta = dict(node.meta)
            node.replace_all_uses_with(chained)
            graph.erase_node(node)
            node = chained
        seen[(*tensors, dim)] = node


def _op_name(node: fx.Node, root: nn.Module) -> str:
    """Human description of what a node calls."""
    if node.op == "call_module":
        cls = type(root.get_submodule(str(node.target)))
        return f"the module {cls.__module__}.{cls.__name__}"
    if node.op == "call_method":
        return f"the method .{node.target}()"
    if node.op == "get_attr":
        return f"the parameter {node.target}"
    target: Any = node.target
    module = (getattr(target, "__module__", None) or "").replace("_operator", "operator")
    name = getattr(target, "__name__", str(target))
    return f"the function {module + '.' if module else ''}{name}"


def _layer_name(node: fx.Node) -> str:
    """Module path of a module call; ``scope:node`` (or the node name at top level) for a functional op."""
    scope = _scope(node)
    if node.op == "call_module" or not scope:
        return scope or node.name
    return f"{scope}:{node.name}"


def _scope(node: fx.Node) -> str:
    """Path of the module whose forward issued the node ("" for the top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return str(next(reversed(stack.values()))[0]) if stack else ""


def _where(node: fx.Node) -> str:
    """Node name, module path and user source line, for error messages."""
    path = _scope(node)
    parts = [f"node {node.name!r}", f"module {path!r}" if path else "the top-level forward"]
    line = _user_line(node.meta.get("stack_trace") or "")
    if line:
        parts.append(line)
    return ", ".join(parts)


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in \S+\n\s*(?P<code>[^\n]*)')


def _user_line(stack_trace: str) -> str:
    """``file:line `code``` of the innermost frame outside torch in an fx stack trace."""
    frames = [m for m in _FRAME.finditer(stack_trace) if not m["file"].startswith(_TORCH_DIR)]
    if not frames:
        return ""
    last = frames[-1]
    return f"{last['file']}:{last['line']} `{last['code'].strip()}`"


def _trace_failure(exc: Exception, tracer: _Tracer) -> str:
    """Message for a model that ``torch.fx`` cannot trace (typically control flow on tensor values)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_TORCH_DIR)]
    location = f" at {frames[-1].filename}:{frames[-1].lineno} `{(frames[-1].line or '').strip()}`" if frames else ""
    stack = list(tracer.module_stack.values())
    module = f" in module {stack[-1][0]!r}" if stack and stack[-1][0] else " in the top-level forward"
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"torch.fx cannot trace this model{location}{module} ({type(exc).__name__}: {first_line}): the forward "
        f"must not branch on tensor values or call untraceable code; {SUPPORTED}"
    )
