"""Turn a candidate into a student plan (IR, shapes, exact cost) without building anything.

Widths: each channel group of the teacher has a ratio; a candidate's removals can merge groups (see
``channels.py``), and a merged set takes the width of its highest-precedence group: fixed groups first
(network input, logits, grouped convs), then groups that meet in a residual addition, then the earliest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from archcompress.errors import ArchcompressError
from archcompress.space.candidate import Candidate
from archcompress.space.channels import INPUT, Flow, GroupKey, channel_flow
from archcompress.space.handlers import Shape, ShapeError, handler
from archcompress.space.ir import (
    ActSpec,
    ConvSpec,
    FlattenSpec,
    LayerSpec,
    LinearSpec,
    PoolSpec,
    ResidualSpec,
    ShuffleSpec,
    SliceSpec,
    Spec,
    StudentArch,
)
from archcompress.space.rules import downsampling
from archcompress.space.units import Structure

_DECIMALS = 6  # canonical ratios are rounded so that float noise cannot change a hash


class InvalidCandidateError(ArchcompressError):
    """The candidate cannot form a working network; the message gives the reason."""


@dataclass(frozen=True)
class PlacedLayer:
    """One student layer: where it sits in the student module, its spec and its teacher origin."""

    path: str  # student submodule path, e.g. "layers.4.body.1"
    spec: LayerSpec
    layer: int  # teacher layer id (CompressionSpace.layers)
    in_shape: Shape
    out_shape: Shape
    in_group: GroupKey  # teacher channel group whose channel indices the input carries (a tuple: concatenated)
    out_group: GroupKey
    flat: int  # spatial positions per channel in a flattened input (1 for feature maps)
    params: int
    macs: int


@dataclass(frozen=True)
class Plan:
    """A valid candidate resolved into a student architecture with exact cost."""

    candidate: Candidate
    arch: StudentArch
    layers: tuple[PlacedLayer, ...]  # student layers made from teacher layers (not a removed conv's pooling)
    widths: dict[int, int]  # teacher channel group -> student width, for the groups that remain
    params: int
    macs: int


def group_width(ratio: float, teacher_width: int, min_channels: int) -> int:
    """Channels kept for a group: ``ratio * width`` rounded half up, at least ``min_channels`` (all if fewer)."""
    return max(min(min_channels, teacher_width), math.floor(ratio * teacher_width + 0.5))


def shrink_kernel(kernel: int, ratio: float) -> int:
    """Kernel size nearest ``ratio * kernel`` with the same parity, so the teacher's centre crop is exact."""
    steps = math.floor((kernel - ratio * kernel) / 2 + 0.5)
    return max(kernel - 2 * steps, 2 - kernel % 2)


def check_shape(structure: Structure, candidate: Candidate) -> None:
    """Fail clearly when a candidate's lengths do not fit this space."""
    expected = (len(structure.removable), len(structure.shrinkable), len(structure.kernel_units))
    actual = (len(candidate.keep), len(candidate.ratios), len(candidate.kernel_ratios))
    if expected != actual:
        raise ArchcompressError(
            f"the candidate has {actual[0]} keep flags, {actual[1]} ratios and {actual[2]} kernel ratios, but "
            f"this space has {expected[0]} removable units, {expected[1]} shrink groups and {expected[2]} "
            "kernel-shrinkable convs: the candidate was made for another teacher or other space options"
        )


def kept_units(structure: Structure, candidate: Candidate) -> list[bool]:
    """Keep flag per unit: the candidate's flag for removable units, True otherwise.

    A removable block whose body units are all removed is the same network as the removed block (its
    identity shortcut alone), so it is marked removed; so is an activation that would repeat the one before it.
    """
    kept = [True] * len(structure.units)
    for position, unit in enumerate(structure.removable):
        kept[unit] = candidate.keep[position]
    for unit in structure.removable:
        body = structure.units[unit].body
        if structure.units[unit].join == "add" and body and not any(kept[u] for u in body):
            kept[unit] = False
    for unit in _repeated_activations(structure, kept):
        kept[unit] = False
    return kept


# (activation, activation whose output it receives) pairs where the second application changes nothing
_IDEMPOTENT_AFTER = {("relu", "relu"), ("relu", "relu6"), ("relu6", "relu6")}


def _repeated_activations(structure: Structure, kept: Sequence[bool]) -> list[int]:
    """Removable activation units of the main path that receive the output of the same activation (a ReLU
    after a ReLU, e.g. the ReLUs that follow two removed residual blocks): removed, so that keeping or removing
    them is one network, one hash."""
    repeated = []
    last_act: str | None = None  # the activation that produced the tensor flowing at this point, if any
    for unit in structure.main:
        info = structure.units[unit]
        if not kept[unit]:
            if info.layers and downsampling(structure.layers[info.layers[0]].spec) is not None:
                last_act = None  # a removed strided conv leaves an average pooling behind
            continue
        tail = structure.layers[info.layers[-1]].spec if info.layers else None
        fn = tail.fn if isinstance(tail, ActSpec) else None
        if info.kind == "act" and info.removable and len(info.layers) == 1 and (fn, last_act) in _IDEMPOTENT_AFTER:
            repeated.append(unit)  # the tensor passes on unchanged: last_act stays
            continue
        last_act = fn
    return repeated


def in_student(structure: Structure, candidate: Candidate) -> list[bool]:
    """Per unit: whether it is part of the student (kept, inside kept blocks, not an emptied block)."""
    kept = kept_units(structure, candidate)
    return [_visible(structure, kept, unit) for unit in range(len(structure.units))]


def _parents_kept(structure: Structure, kept: Sequence[bool], unit: int) -> bool:
    """Whether the blocks around a unit are kept."""
    parent = structure.units[unit].parent
    return parent is None or _visible(structure, kept, parent)


def _visible(structure: Structure, kept: Sequence[bool], unit: int) -> bool:
    """Whether a unit is in the student: kept, and so are the blocks around it."""
    return kept[unit] and _parents_kept(structure, kept, unit)


class _Widths:
    """Width of each channel variable for one keep mask and ratio vector."""

    def __init__(self, structure: Structure, flow: Flow, ratios: Sequence[float], min_channels: int) -> None:
        self.flow = flow
        groups = structure.groups
        members: dict[int, list[int]] = {}
        for var in (INPUT, *(v for v in flow.out_var.values() if v != INPUT and v not in flow.concat)):
            members.setdefault(flow.sets.find(var), []).append(structure.var_group[var])
        # precedence: fixed, then residual, then earliest teacher group
        self.chosen = {
            root: min(found, key=lambda g: (not groups[g].fixed, not groups[g].residual, g))
            for root, found in members.items()
        }
        self.widths: dict[int, int] = {}
        for group in set(self.chosen.values()):
            info = groups[group]
            if info.ratio_index is None:
                self.widths[group] = info.width
            else:
                self.widths[group] = group_width(ratios[info.ratio_index], info.width, min_channels)

    def group(self, var: int) -> GroupKey:
        """Teacher group whose width and channel indices a variable takes (a tuple for a concatenation)."""
        if var in self.flow.concat:
            return tuple(self.chosen[leaf] for leaf in self.flow.leaves(var))
        return self.chosen[self.flow.sets.find(var)]

    def width(self, key: GroupKey) -> int:
        """Student channels of a group (summed over the leaves of a concatenation)."""
        return sum(self.widths[g] for g in key) if isinstance(key, tuple) else self.widths[key]


def canonical(structure: Structure, candidate: Candidate, min_channels: int) -> Candidate:
    """Equal networks give equal canonical candidates: irrelevant entries are reset, ratios made exact."""
    check_shape(structure, candidate)
    kept = kept_units(structure, candidate)
    # a flag under a removed block changes nothing: reset it to keep
    keep = tuple(kept[unit] if _parents_kept(structure, kept, unit) else True for unit in structure.removable)
    flow = channel_flow(structure.units, structure.main, structure.produces, lambda u: kept[u])
    widths = _Widths(structure, flow, candidate.ratios, min_channels)
    ratios = []
    for position, group in enumerate(structure.shrinkable):
        raw = candidate.ratios[position]
        if not 0 < raw <= 1:
            ratios.append(raw)  # invalid: keep it as given so the hash still tells candidates apart
        elif group in widths.widths:
            ratios.append(round(widths.widths[group] / structure.groups[group].width, _DECIMALS))
        else:
            ratios.append(1.0)  # no remaining layer has these channels
    kernel_ratios = []
    for position, unit in enumerate(structure.kernel_units):
        raw = candidate.kernel_ratios[position]
        spec = structure.layers[structure.units[unit].layers[0]].spec
        assert isinstance(spec, ConvSpec)
        if not 0 < raw <= 1:
            kernel_ratios.append(raw)
        elif _visible(structure, kept, unit):
            kernel_ratios.append(round(shrink_kernel(spec.kernel[0], raw) / spec.kernel[0], _DECIMALS))
        else:
            kernel_ratios.append(1.0)
    return Candidate(keep, tuple(ratios), tuple(kernel_ratios))


def resolve(structure: Structure, candidate: Candidate, min_channels: int) -> Plan:
    """The student plan for a candidate; raises :class:`InvalidCandidateError` with the reason."""
    check_shape(structure, candidate)
    for position, ratio in enumerate(candidate.ratios):
        if not 0 < ratio <= 1:
            raise InvalidCandidateError(f"width ratio {ratio} of shrink group {position} is outside (0, 1]")
    for position, ratio in enumerate(candidate.kernel_ratios):
        if not 0 < ratio <= 1:
            raise InvalidCandidateError(f"kernel ratio {ratio} of kernel unit {position} is outside (0, 1]")
    kept = kept_units(structure, candidate)
    flow = channel_flow(structure.units, structure.main, structure.produces, lambda u: kept[u])
    if flow.merged_concat:
        raise InvalidCandidateError("a concatenation would be added to or multiplied with another tensor")
    widths = _Widths(structure, flow, candidate.ratios, min_channels)  # >= 1: ratios > 0, min_channels >= 1
    placer = _Placer(structure, candidate, kept, flow, widths)
    specs, shape, _ = placer.place(structure.main, structure.input_shape, 1, "layers")
    expected = structure.units[structure.main[-1]].out_shape
    if shape != expected:
        raise InvalidCandidateError(f"the student outputs shape {shape}, not the teacher's {expected}")
    if not any(isinstance(p.spec, ConvSpec | LinearSpec) for p in placer.placed):
        raise InvalidCandidateError("all layers with weights are removed")
    params = sum(p.params for p in placer.placed)
    macs = sum(p.macs for p in placer.placed)
    if params > structure.params:
        raise InvalidCandidateError(
            f"the student has more parameters ({params:,}) than the teacher ({structure.params:,})"
        )
    arch = StudentArch(structure.input_shape, tuple(specs))
    return Plan(candidate, arch, tuple(placer.placed), dict(widths.widths), params, macs)


class _Placer:
    """Walks the kept units, sizing each layer and inferring shapes."""

    def __init__(
        self, structure: Structure, candidate: Candidate, kept: list[bool], flow: Flow, widths: _Widths
    ) -> None:
        self.structure = structure
        self.candidate = candidate
        self.kept = kept
        self.flow = flow
        self.widths = widths
        self.placed: list[PlacedLayer] = []

    def place(
        self, seq: Sequence[int], shape: Shape, flat: int, prefix: str, start: int = 0
    ) -> tuple[list[Spec], Shape, int]:
        """Specs of the kept units of ``seq`` for an input of ``shape``; returns specs, output shape, flat.

        ``start`` is the position in the student's sequence ``prefix`` of the first spec placed.
        """
        specs: list[Spec] = []
        for index in seq:
            unit = self.structure.units[index]
            where = f"unit {index} ({unit.kind} {unit.name})"
            if not self.kept[index]:
                # a removed strided conv leaves its downsampling (a pooling) so that later shapes stay the teacher's
                stand_in = downsampling(self.structure.layers[unit.layers[0]].spec) if unit.layers else None
                if stand_in is not None:
                    shape = self._stand_in(stand_in, shape, where)
                    specs.append(stand_in)
                continue
            if unit.kind == "block" and unit.join == "add" and not any(self.kept[u] for u in unit.body):
                # an emptied body adds nothing: the projection shortcut alone stays, in line
                inline, shape, flat = self.place(unit.shortcut, shape, flat, prefix, start + len(specs))
                specs.extend(inline)
                continue
            if unit.kind == "block":
                path = f"{prefix}.{start + len(specs)}"
                body, body_shape, body_flat = self.place(unit.body, shape, flat, f"{path}.body")
                shortcut, shortcut_shape, shortcut_flat = self.place(unit.shortcut, shape, flat, f"{path}.shortcut")
                if unit.join == "cat":
                    # channels of the body, then of the shortcut; the spatial sizes must agree
                    if len(body_shape) < 2 or body_shape[1:] != shortcut_shape[1:]:
                        raise InvalidCandidateError(
                            f"{where}: cannot concatenate shapes {body_shape} and {shortcut_shape} along channels"
                        )
                    body_shape, body_flat = (body_shape[0] + shortcut_shape[0], *body_shape[1:]), 1
                elif unit.join == "mul":
                    # a gate (C, 1, ...) scales the shortcut's (C, *spatial) channel by channel
                    fits = len(body_shape) == len(shortcut_shape) and body_shape[0] == shortcut_shape[0]
                    if not fits or not (body_shape == shortcut_shape or set(body_shape[1:]) <= {1}):
                        raise InvalidCandidateError(
                            f"{where}: the gate gives shape {body_shape}, which cannot scale {shortcut_shape}"
                        )
                    body_shape, body_flat = shortcut_shape, shortcut_flat
                elif body_shape != shortcut_shape:
                    raise InvalidCandidateError(
                        f"{where}: the body gives shape {body_shape} but the shortcut {shortcut_shape}"
                    )
                specs.append(ResidualSpec(tuple(body), tuple(shortcut), unit.join))
                shape, flat = body_shape, body_flat
                continue
            for layer_id in unit.layers:
                path = f"{prefix}.{start + len(specs)}"
                spec, shape, flat = self._layer(layer_id, unit.kernel_index, shape, flat, path, where)
                specs.append(spec)
        return specs, shape, flat

    @staticmethod
    def _stand_in(spec: PoolSpec, shape: Shape, where: str) -> Shape:
        """Output shape of a removed strided conv's pooling (no parameters, no MACs: not a placed layer)."""
        try:
            return handler(spec).out_shape(spec, shape)
        except ShapeError as exc:
            raise InvalidCandidateError(f"{where}: the downsampling left by the removed conv: {exc}") from exc

    def _layer(
        self, layer_id: int, kernel_index: int | None, shape: Shape, flat: int, path: str, where: str
    ) -> tuple[LayerSpec, Shape, int]:
        teacher = self.structure.layers[layer_id]
        h = handler(teacher.spec)
        in_group = self.widths.group(self.flow.in_var[layer_id])
        out_group = self.widths.group(self.flow.out_var[layer_id])
        kernel = None
        if kernel_index is not None and isinstance(teacher.spec, ConvSpec):
            kernel = shrink_kernel(teacher.spec.kernel[0], self.candidate.kernel_ratios[kernel_index])
        leaves = in_group if isinstance(in_group, tuple) else (in_group,)
        if isinstance(teacher.spec, SliceSpec | ShuffleSpec) and not all(
            self.structure.groups[g].fixed for g in leaves
        ):
            # after removals, a slice or shuffle would cut or permute channels that may be shrunk (a grouped
            # conv may: the divisibility check below covers it, and a re-routed input is freshly initialised)
            raise InvalidCandidateError(f"{where}: a {teacher.spec.op} would read channels whose width is not fixed")
        spec = h.resize(teacher.spec, shape[0], self.widths.width(out_group), kernel)
        if (
            isinstance(spec, ConvSpec)
            and spec.groups > 1
            and (spec.in_channels % spec.groups or spec.out_channels % spec.groups)
        ):
            raise InvalidCandidateError(
                f"{where}: {spec.in_channels} -> {spec.out_channels} channels do not divide into {spec.groups} groups"
            )
        try:
            out_shape = h.out_shape(spec, shape)
        except ShapeError as exc:
            raise InvalidCandidateError(f"{where}: {exc}") from exc
        self.placed.append(
            PlacedLayer(
                path=path,
                spec=spec,
                layer=layer_id,
                in_shape=shape,
                out_shape=out_shape,
                in_group=in_group,
                out_group=out_group,
                flat=flat,
                params=h.params(spec),
                macs=h.macs(spec, shape, out_shape),
            )
        )
        if isinstance(spec, FlattenSpec):
            flat *= math.prod(shape[1:])
        elif h.produces(spec):
            flat = 1
        return spec, out_shape, flat
