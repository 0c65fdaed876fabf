"""Units of a traced teacher (what policies act on), its channel groups, and the unit feature vectors.

A unit is a weighted layer together with the batch norm and activation right after it, any other single
layer (pooling, dropout, flatten, a stray norm or activation), or a residual block. A block is listed
before its body units, then its shortcut units, so the unit list is a pre-order walk of the network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from archcompress.errors import ArchcompressError
from archcompress.space.channels import INPUT, Flow, GroupKey, channel_flow
from archcompress.space.handlers import Shape, handler
from archcompress.space.ir import (
    ActSpec,
    AdaptivePoolSpec,
    ChannelNormSpec,
    ConvSpec,
    DropoutSpec,
    FlattenSpec,
    LinearSpec,
    MeanSpec,
    NormSpec,
    PoolSpec,
    ScaleSpec,
    ShuffleSpec,
    SliceSpec,
)
from archcompress.space.rules import RemovalRules
from archcompress.space.trace import TracedBlock, TracedItem, TracedLayer

UNIT_KINDS = ("conv", "linear", "norm", "act", "pool", "adaptive_pool", "dropout", "flatten", "block")
_KIND_OF: dict[type, str] = {
    ConvSpec: "conv",
    LinearSpec: "linear",
    NormSpec: "norm",
    ChannelNormSpec: "norm",
    ScaleSpec: "norm",  # a learned per-channel scale: the affine half of a norm
    ActSpec: "act",
    PoolSpec: "pool",
    AdaptivePoolSpec: "adaptive_pool",
    MeanSpec: "adaptive_pool",  # x.mean(spatial dims) is global average pooling
    SliceSpec: "flatten",  # reshaping ops without weights: the closest existing kind (FEATURE_SCHEMA v1)
    ShuffleSpec: "flatten",
    DropoutSpec: "dropout",
    FlattenSpec: "flatten",
}


@dataclass(frozen=True)
class FeatureSchema:
    """Names (and version) of the entries of :attr:`Unit.features`; saved with policies and encoders.

    ``action_names`` are the extra columns ``CompressionSpace.candidate_features`` appends per unit.
    """

    version: int
    names: tuple[str, ...]
    action_names: tuple[str, ...] = ("kept", "width_ratio", "kernel_ratio")

    def __len__(self) -> int:
        return len(self.names)


FEATURE_SCHEMA = FeatureSchema(
    version=1,
    names=(
        *(f"type_{kind}" for kind in UNIT_KINDS),  # one-hot unit kind
        "depthwise",  # conv with one filter per channel
        "grouped",  # other grouped conv
        "kernel",  # log2(kernel) / 3 of the conv or pool window (0 for none)
        "stride",  # log2(input size / output size) per dimension / 4, clipped to [-1, 1]: downsampling
        "padding",  # padding / kernel
        "in_width",  # log2(input channels or features) / 12
        "out_width",  # log2(output channels or features) / 12
        "in_size",  # log2(input spatial elements) / 16 (0 once flat)
        "out_size",  # log2(output spatial elements) / 16
        "position",  # index / (number of units - 1)
        "is_block",
        "in_body",  # inside a residual block's body
        "in_shortcut",  # inside a projection shortcut
        "identity_shortcut",  # a block whose shortcut is the identity
        "has_norm",  # weighted layer followed by batch norm
        "has_act",  # weighted layer followed by an activation
        "removable",
        "shrinkable",  # has a width ratio of its own channel group
        "kernel_shrinkable",
        "is_first",  # first unit with weights
        "is_classifier",  # last linear layer
        "param_share",  # share of the teacher's parameters
        "mac_share",  # share of the teacher's MACs
        "log_params",  # log10(1 + params) / 8
    ),
)


@dataclass(frozen=True)
class Unit:
    """One entry of the compression space's unit list (see the module docstring)."""

    index: int
    kind: str  # one of UNIT_KINDS
    name: str  # teacher module path (or fx node name for functional ops)
    layers: tuple[int, ...]  # indices into CompressionSpace.layers; empty for a block
    in_shape: Shape  # per sample, teacher
    out_shape: Shape
    params: int
    macs: int
    removable: bool
    keep_index: int | None  # position in Candidate.keep, for removable units
    shrink_group: int | None  # position in Candidate.ratios of its output channels' group
    kernel_index: int | None  # position in Candidate.kernel_ratios
    parent: int | None  # the block this unit belongs to
    branch: str  # "main" | "body" | "gate" (the body of a "mul" block) | "shortcut"
    body: tuple[int, ...] = ()
    shortcut: tuple[int, ...] = ()  # empty for an identity shortcut
    join: str = "add"  # blocks: "add" (residual, body + shortcut) or "mul" (gate, body * shortcut)
    features: tuple[float, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ChannelGroup:
    """Teacher channels that must keep the same width and the same selected indices."""

    index: int
    width: int  # teacher channels
    fixed: bool  # never shrunk: network input, logits, grouped-conv channels
    residual: bool  # met in a residual addition
    ratio_index: int | None  # position in Candidate.ratios; None when fixed
    producers: tuple[int, ...]  # weighted layers whose outputs are these channels


@dataclass(frozen=True)
class Structure:
    """Everything the space derives from the traced teacher; pure data, no modules."""

    input_shape: Shape
    layers: tuple[TracedLayer, ...]
    units: tuple[Unit, ...]
    main: tuple[int, ...]  # top-level unit indices
    groups: tuple[ChannelGroup, ...]
    produces: tuple[bool, ...]  # per layer: opens new channels
    var_group: dict[int, int]  # channel variable (INPUT or producing layer id) -> static group
    layer_in_group: tuple[GroupKey, ...]  # a tuple of leaf groups after a concatenation
    layer_out_group: tuple[GroupKey, ...]
    removable: tuple[int, ...]  # unit index of each Candidate.keep entry
    shrinkable: tuple[int, ...]  # group index of each Candidate.ratios entry
    kernel_units: tuple[int, ...]  # unit index of each Candidate.kernel_ratios entry
    params: int  # teacher totals over the traced layers
    macs: int


@dataclass
class _Draft:
    """A unit before its index-dependent fields are known."""

    kind: str
    name: str
    parent: int | None
    branch: str
    layers: tuple[int, ...] = ()
    body: tuple[int, ...] = ()
    shortcut: tuple[int, ...] = ()
    in_shape: Shape = ()
    out_shape: Shape = ()
    join: str = "add"


def build_structure(
    items: Sequence[TracedItem], input_shape: Shape, rules: RemovalRules, kernel_shrink: bool
) -> Structure:
    """Group traced items into units, find channel groups and compute features."""
    layers: list[TracedLayer] = []
    drafts: list[_Draft] = []
    main = _add_sequence(items, None, "main", layers, drafts)
    produces = tuple(handler(layer.spec).produces(layer.spec) for layer in layers)
    flow = channel_flow(drafts, main, produces, lambda _: True)
    if flow.merged_concat:
        raise ArchcompressError(
            "cannot compress this model: a concatenation (torch.cat) whose output is added to or multiplied "
            "with another tensor is not supported; concatenations must feed layers (DenseNet, Inception)"
        )
    groups, var_group = _static_groups(flow, layers, produces, input_shape)
    layer_in = tuple(_group_of(flow, var_group, flow.in_var[i]) for i in range(len(layers)))
    layer_out = tuple(_group_of(flow, var_group, flow.out_var[i]) for i in range(len(layers)))

    costs = [_layer_cost(layer) for layer in layers]
    weighted = [i for i, d in enumerate(drafts) if d.kind in ("conv", "linear")]
    linears = [i for i in weighted if drafts[i].kind == "linear"]
    first = weighted[0] if weighted else None
    classifier = (linears or weighted)[-1] if weighted else None

    units: list[Unit] = []
    keep_units: list[int] = []
    kernel_units: list[int] = []
    for index, d in enumerate(drafts):
        specs = tuple(layers[i].spec for i in d.layers)
        if d.kind == "block":
            removable = rules.block_removable(
                identity_shortcut=not d.shortcut, join=d.join, branch=d.branch, identity_body=not d.body
            )
            inside = _layers_within(drafts, index)
            params = sum(costs[i][0] for i in inside)
            macs = sum(costs[i][1] for i in inside)
            out_group: GroupKey | None = layer_out[inside[-1]] if d.join != "cat" else None
        else:
            removable = rules.layer_removable(
                specs, first=index == first, classifier=index == classifier, branch=d.branch
            )
            params = sum(costs[i][0] for i in d.layers)
            macs = sum(costs[i][1] for i in d.layers)
            out_group = layer_out[d.layers[0]] if d.kind in ("conv", "linear") else None
        head = specs[0] if specs else None
        can_shrink_kernel = kernel_shrink and isinstance(head, ConvSpec) and _kernel_shrinkable(head)
        units.append(
            Unit(
                index=index,
                kind=d.kind,
                name=d.name,
                layers=d.layers,
                in_shape=d.in_shape,
                out_shape=d.out_shape,
                params=params,
                macs=macs,
                removable=removable,
                keep_index=len(keep_units) if removable else None,
                shrink_group=groups[out_group].ratio_index if isinstance(out_group, int) else None,
                kernel_index=len(kernel_units) if can_shrink_kernel else None,
                parent=d.parent,
                branch=d.branch,
                body=d.body,
                shortcut=d.shortcut,
                join=d.join,
            )
        )
        if removable:
            keep_units.append(index)
        if can_shrink_kernel:
            kernel_units.append(index)
    total_params = sum(c[0] for c in costs)
    total_macs = sum(c[1] for c in costs)
    units = [_with_features(u, units, layers, first, classifier, total_params, total_macs) for u in units]
    return Structure(
        input_shape=input_shape,
        layers=tuple(layers),
        units=tuple(units),
        main=tuple(main),
        groups=groups,
        produces=produces,
        var_group=var_group,
        layer_in_group=layer_in,
        layer_out_group=layer_out,
        removable=tuple(keep_units),
        shrinkable=tuple(g.index for g in groups if g.ratio_index is not None),
        kernel_units=tuple(kernel_units),
        params=total_params,
        macs=total_macs,
    )


def _add_sequence(
    items: Sequence[TracedItem],
    parent: int | None,
    branch: str,
    layers: list[TracedLayer],
    drafts: list[_Draft],
) -> list[int]:
    """Append the units of one sequence (recursing into blocks); returns their indices."""
    indices: list[int] = []
    position = 0
    while position < len(items):
        item = items[position]
        position += 1
        index = len(drafts)
        indices.append(index)
        if isinstance(item, TracedBlock):
            sources = [layer.source for layer in _traced_layers(item) if layer.source]
            draft = _Draft("block", _common_prefix(sources) or item.node, parent, branch, join=item.join)
            draft.in_shape, draft.out_shape = item.in_shape, item.out_shape
            drafts.append(draft)
            body_branch, shortcut_branch = {"add": ("body", "shortcut"), "mul": ("gate", "shortcut")}.get(
                item.join, ("concat", "concat")
            )
            draft.body = tuple(_add_sequence(item.body, index, body_branch, layers, drafts))
            draft.shortcut = tuple(_add_sequence(item.shortcut, index, shortcut_branch, layers, drafts))
            continue
        group = [item]
        if isinstance(item.spec, ConvSpec | LinearSpec):
            # a weighted layer takes the batch norm and then the activation that directly follow it
            for follower in (NormSpec | ChannelNormSpec, ActSpec):
                nxt = items[position] if position < len(items) else None
                if isinstance(nxt, TracedLayer) and isinstance(nxt.spec, follower):
                    group.append(nxt)
                    position += 1
        ids = tuple(range(len(layers), len(layers) + len(group)))
        layers.extend(group)
        draft = _Draft(_KIND_OF[type(item.spec)], item.name, parent, branch, ids)
        draft.in_shape, draft.out_shape = group[0].in_shape, group[-1].out_shape
        drafts.append(draft)
    return indices


def _traced_layers(block: TracedBlock) -> list[TracedLayer]:
    """Every layer inside a traced block (nested blocks included), body first."""
    found: list[TracedLayer] = []
    for item in (*block.body, *block.shortcut):
        found.extend(_traced_layers(item) if isinstance(item, TracedBlock) else [item])
    return found


def _layers_within(drafts: Sequence[_Draft], index: int) -> list[int]:
    """Layer ids of a block's body (then shortcut) units, nested blocks included, in order."""
    found: list[int] = []
    for unit in (*drafts[index].body, *drafts[index].shortcut):
        found.extend(_layers_within(drafts, unit) if drafts[unit].kind == "block" else drafts[unit].layers)
    return found


def _common_prefix(paths: Sequence[str]) -> str:
    """Longest common dotted prefix of module paths (``layer1.0.conv1``, ``layer1.0.bn1`` -> ``layer1.0``)."""
    if not paths:
        return ""
    parts = [p.split(".") for p in paths]
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    if len(paths) == 1:
        common = common[:-1]
    return ".".join(common)


def _group_of(flow: Flow, var_group: dict[int, int], var: int) -> GroupKey:
    if var in flow.concat:
        return tuple(var_group[leaf] for leaf in flow.leaves(var))
    return var_group[flow.sets.find(var)]


def _leaf_groups(key: GroupKey) -> tuple[int, ...]:
    return key if isinstance(key, tuple) else (key,)


def _static_groups(
    flow: Flow, layers: Sequence[TracedLayer], produces: Sequence[bool], input_shape: Shape
) -> tuple[tuple[ChannelGroup, ...], dict[int, int]]:
    """Number the teacher's channel groups in order of first appearance; mark fixed and residual ones."""
    variables = [INPUT, *(i for i, p in enumerate(produces) if p)]
    root_group: dict[int, int] = {}
    for var in variables:
        root_group.setdefault(flow.sets.find(var), len(root_group))
    var_group = {var: root_group[flow.sets.find(var)] for var in variables}
    for root, group in root_group.items():
        var_group.setdefault(root, group)
    widths: dict[int, int] = {var_group[INPUT]: input_shape[0]}
    producers: dict[int, list[int]] = {}
    fixed = {var_group[INPUT], var_group[flow.sets.find(flow.final)]}
    for i, layer in enumerate(layers):
        spec = layer.spec
        if produces[i]:
            group = var_group[i]
            producers.setdefault(group, []).append(i)
            widths.setdefault(group, layer.out_shape[0])
        if handler(spec).fixes_channels(spec):
            # grouped convs need widths divisible by their group count; a slice or a shuffle of shrunk
            # channels would pick other channels than the teacher's: keep those channels as they are
            for var in (flow.in_var[i], flow.out_var[i]):
                fixed.update(_leaf_groups(_group_of(flow, var_group, var)))
    residual = {var_group[flow.sets.find(v)] for v in flow.merged}
    groups: list[ChannelGroup] = []
    next_ratio = 0
    for group in range(len(root_group)):
        ratio_index = None
        if group not in fixed:
            ratio_index, next_ratio = next_ratio, next_ratio + 1
        groups.append(
            ChannelGroup(
                index=group,
                width=widths[group],
                fixed=group in fixed,
                residual=group in residual,
                ratio_index=ratio_index,
                producers=tuple(producers.get(group, ())),
            )
        )
    return tuple(groups), var_group


def _layer_cost(layer: TracedLayer) -> tuple[int, int]:
    h = handler(layer.spec)
    return h.params(layer.spec), h.macs(layer.spec, layer.in_shape, layer.out_shape)


def _kernel_shrinkable(spec: ConvSpec) -> bool:
    """Plain (ungrouped, undilated, zero-padded) convs with a square kernel larger than 1."""
    return (
        spec.groups == 1
        and len(set(spec.kernel)) == 1
        and spec.kernel[0] > 1
        and set(spec.dilation) == {1}
        and spec.padding_mode == "zeros"
    )


def _log2(value: float) -> float:
    return math.log2(value) if value > 0 else 0.0


def _with_features(
    unit: Unit,
    units: Sequence[Unit],
    layers: Sequence[TracedLayer],
    first: int | None,
    classifier: int | None,
    total_params: int,
    total_macs: int,
) -> Unit:
    """The unit with its size-independent feature vector (see FEATURE_SCHEMA for each entry)."""
    specs = [layers[i].spec for i in unit.layers]
    head = specs[0] if specs else None
    kernel = stride_len = padding = 0.0  # stride_len: clipped log2 downsampling
    if isinstance(head, ConvSpec | PoolSpec):
        kernel = _log2(max(head.kernel)) / 3
        padding = max(head.padding) / max(head.kernel)
    in_size = math.prod(unit.in_shape[1:]) if len(unit.in_shape) > 1 else 0
    out_size = math.prod(unit.out_shape[1:]) if len(unit.out_shape) > 1 else 0
    if in_size and out_size:
        per_dim = _log2(in_size / out_size) / max(1, len(unit.in_shape) - 1)
        stride_len = min(1.0, max(-1.0, per_dim / 4))
    values = {
        **{f"type_{kind}": float(unit.kind == kind) for kind in UNIT_KINDS},
        "depthwise": float(isinstance(head, ConvSpec) and head.depthwise),
        "grouped": float(isinstance(head, ConvSpec) and head.groups > 1 and not head.depthwise),
        "kernel": kernel,
        "stride": stride_len,
        "padding": padding,
        "in_width": _log2(unit.in_shape[0]) / 12,
        "out_width": _log2(unit.out_shape[0]) / 12,
        "in_size": _log2(in_size) / 16,
        "out_size": _log2(out_size) / 16,
        "position": unit.index / max(1, len(units) - 1),
        "is_block": float(unit.kind == "block"),
        "in_body": float(unit.branch in ("body", "gate", "concat")),
        "in_shortcut": float(unit.branch == "shortcut"),
        "identity_shortcut": float(unit.kind == "block" and not unit.shortcut),
        "has_norm": float(any(isinstance(s, NormSpec | ChannelNormSpec) for s in specs[1:])),
        "has_act": float(any(isinstance(s, ActSpec) for s in specs[1:])),
        "removable": float(unit.removable),
        "shrinkable": float(unit.shrink_group is not None),
        "kernel_shrinkable": float(unit.kernel_index is not None),
        "is_first": float(unit.index == first),
        "is_classifier": float(unit.index == classifier),
        "param_share": unit.params / total_params if total_params else 0.0,
        "mac_share": unit.macs / total_macs if total_macs else 0.0,
        "log_params": math.log10(1 + unit.params) / 8,
    }
    features = tuple(float(values[name]) for name in FEATURE_SCHEMA.names)
    return dataclasses.replace(unit, features=features)
