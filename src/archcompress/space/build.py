"""One builder from the IR to plain modules, and weight inheritance from the teacher.

Modules are first created on the meta device and then given real, uninitialised memory, so every layer is
written exactly once: copied from the teacher, loaded from a state dict, or freshly initialised.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archcompress.space.candidate import Candidate
from archcompress.space.channels import GroupKey
from archcompress.space.handlers import handler, tensor_attr
from archcompress.space.ir import NormSpec, ResidualSpec, Spec, StudentArch
from archcompress.space.resolve import PlacedLayer, Plan
from archcompress.space.units import Structure


class Residual(nn.Module):
    """``body(x) + shortcut(x)``, ``body(x) * shortcut(x)`` (a gate) or ``cat([body(x), shortcut(x)], 1)``.

    An empty branch is the identity.
    """

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential, join: str = "add") -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.join = join

    def forward(self, x: Tensor) -> Tensor:
        if self.join == "cat":
            return torch.cat([self.body(x), self.shortcut(x)], 1)  # (B, C_body + C_shortcut, *spatial)
        if self.join == "mul":
            return self.body(x) * self.shortcut(x)  # gate (B, C, 1, 1) * (B, C, H, W)
        return self.body(x) + self.shortcut(x)  # both (B, C, *spatial)


class Student(nn.Module):
    """A network built from a :class:`StudentArch`; ``arch`` is all that is needed to rebuild it."""

    def __init__(self, arch: StudentArch) -> None:
        super().__init__()
        self.arch = arch
        self.layers = nn.Sequential(*(_module(spec) for spec in arch.layers))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, *input_shape) -> (B, num_classes)


def _module(spec: Spec) -> nn.Module:
    if isinstance(spec, ResidualSpec):
        return Residual(
            nn.Sequential(*(_module(s) for s in spec.body)),
            nn.Sequential(*(_module(s) for s in spec.shortcut)),
            spec.join,
        )
    return handler(spec).build(spec)


def empty_student(arch: StudentArch, device: torch.device | str = "cpu") -> Student:
    """A student with allocated but uninitialised parameters and buffers."""
    with torch.device("meta"):
        student = Student(arch)
    return student.to_empty(device=device)


def reset(module: nn.Module) -> None:
    """PyTorch's default initialisation for every layer of ``module`` (BN statistics included)."""
    for m in module.modules():
        reset_parameters = getattr(m, "reset_parameters", None)
        if callable(reset_parameters):
            reset_parameters()


def fresh_student(arch: StudentArch) -> Student:
    """A freshly initialised student."""
    student = empty_student(arch)
    reset(student)
    return student


def has_state(module: nn.Module) -> bool:
    """Whether a layer holds parameters or buffers (and so is either inherited or freshly initialised)."""
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


@dataclass(frozen=True)
class BuildResult:
    """A built student with how each weighted layer was initialised."""

    module: Student
    arch: StudentArch
    candidate: Candidate
    inherited: int  # layers whose weights were copied from the teacher
    fresh: int  # layers freshly initialised (shape or channel meaning differs from the teacher)
    fresh_layers: tuple[str, ...]  # their paths in ``module``
    params: int
    macs: int


class Inheritor:
    """Copies teacher weights into a student, keeping the top-L1 channels of each channel group."""

    def __init__(self, structure: Structure, modules: Mapping[str, nn.Module]) -> None:
        self.structure = structure
        self.modules = modules
        self._importance: dict[int, Tensor] = {}

    def importance(self, group: int) -> Tensor:
        """Per-channel L1 norm of the group's producing filters, summed over the group's layers."""
        if group not in self._importance:
            total: Tensor | None = None
            for layer_id in self.structure.groups[group].producers:
                if not self.structure.layers[layer_id].source:
                    continue  # a slice or shuffle: no weights (its group is fixed, so never ranked)
                weight = tensor_attr(self.modules[self.structure.layers[layer_id].source], "weight")
                l1 = weight.abs().flatten(1).sum(1).to("cpu", torch.float64)  # (C_out,)
                total = l1 if total is None else total + l1
            width = self.structure.groups[group].width
            self._importance[group] = total if total is not None else torch.zeros(width, dtype=torch.float64)
        return self._importance[group]

    def indices(self, group: int, width: int) -> Tensor:
        """Teacher channel indices kept for a group at ``width``: top-L1, in ascending order."""
        full = self.structure.groups[group].width
        if width == full:
            return torch.arange(full)
        # a stable sort makes ties deterministic (lower index first)
        order = torch.argsort(self.importance(group), descending=True, stable=True)
        return order[:width].sort().values

    def apply(self, student: Student, plan: Plan) -> list[str]:
        """Inherit every layer that corresponds to a teacher layer; fresh-initialise the rest (returned)."""
        fresh: list[str] = []
        previous_fresh = False
        for placed in plan.layers:
            module = student.get_submodule(placed.path)
            if not has_state(module):
                continue
            # a batch norm right after a fresh layer would normalise with statistics of other features
            follows_fresh = previous_fresh and isinstance(placed.spec, NormSpec)
            previous_fresh = follows_fresh or not self._inheritable(placed)
            if not previous_fresh:
                teacher = self.modules[self.structure.layers[placed.layer].source]
                in_idx, out_idx = self._layer_indices(placed, plan)
                device = next(itertools.chain(teacher.parameters(), teacher.buffers())).device
                state = handler(placed.spec).inherit(placed.spec, teacher, in_idx.to(device), out_idx.to(device))
                module.load_state_dict(state)
            else:
                reset(module)
                fresh.append(placed.path)
        return fresh

    def _inheritable(self, placed: PlacedLayer) -> bool:
        """Same channel meaning on both sides and no larger than the teacher layer."""
        s = self.structure
        teacher = s.layers[placed.layer]
        if not teacher.source:
            return False  # e.g. a functional op: nothing to copy
        if self._offsets(placed.in_group, s.layer_in_group[placed.layer]) is None:
            return False  # the input channels come from a different teacher layer than they used to
        if placed.flat != self._teacher_flat(placed.layer):
            return False
        return not s.produces[placed.layer] or placed.out_group == s.layer_out_group[placed.layer]

    def _teacher_flat(self, layer_id: int) -> int:
        teacher = self.structure.layers[layer_id]
        if len(teacher.in_shape) > 1:
            return 1
        return teacher.in_shape[0] // sum(
            self.structure.groups[g].width for g in _leaves(self.structure.layer_in_group[layer_id])
        )

    def _offsets(self, key: GroupKey, teacher_key: GroupKey) -> list[int] | None:
        """Where each leaf of ``key`` starts in the teacher's ``teacher_key`` channels; None if not all are there.

        Equal keys match leaf by leaf; a concatenation that lost segments (a removed dense layer) matches the
        teacher's as an ordered subsequence, so its consumers keep the columns of the remaining segments.
        """
        leaves, teacher_leaves = _leaves(key), _leaves(teacher_key)
        offsets, offset, position = [], 0, 0
        for leaf in leaves:
            while position < len(teacher_leaves) and teacher_leaves[position] != leaf:
                offset += self.structure.groups[teacher_leaves[position]].width
                position += 1
            if position == len(teacher_leaves):
                return None
            offsets.append(offset)
            offset += self.structure.groups[leaf].width
            position += 1
        return offsets

    def key_indices(self, key: GroupKey, widths: Mapping[int, int], teacher_key: GroupKey | None = None) -> Tensor:
        """Kept teacher channel indices of a group; for a concatenation, each leaf's at its teacher offset."""
        offsets = self._offsets(key, key if teacher_key is None else teacher_key)
        assert offsets is not None, f"{key} is not part of {teacher_key}"
        parts = [self.indices(g, widths[g]) + o for g, o in zip(_leaves(key), offsets, strict=True)]
        return torch.cat(parts)

    def _layer_indices(self, placed: PlacedLayer, plan: Plan) -> tuple[Tensor, Tensor]:
        """Input indices (expanded over flattened positions) and output indices of a layer."""
        channels = self.key_indices(placed.in_group, plan.widths, self.structure.layer_in_group[placed.layer])
        # a flattened (C, *S) input holds channel c at positions c * flat ... c * flat + flat - 1
        in_idx = (channels[:, None] * placed.flat + torch.arange(placed.flat)).reshape(-1)
        if not self.structure.produces[placed.layer]:
            return in_idx, in_idx
        return in_idx, self.key_indices(placed.out_group, plan.widths)


def _leaves(key: GroupKey) -> tuple[int, ...]:
    return key if isinstance(key, tuple) else (key,)


def build_plan(plan: Plan, inheritor: Inheritor | None) -> BuildResult:
    """Build the planned student; ``inheritor=None`` initialises every layer freshly."""
    student = empty_student(plan.arch)
    if inheritor is None:
        reset(student)
        fresh = [p.path for p in plan.layers if has_state(student.get_submodule(p.path))]
    else:
        fresh = inheritor.apply(student, plan)
    stateful = sum(1 for p in plan.layers if has_state(student.get_submodule(p.path)))
    return BuildResult(
        module=student,
        arch=plan.arch,
        candidate=plan.candidate,
        inherited=stateful - len(fresh),
        fresh=len(fresh),
        fresh_layers=tuple(fresh),
        params=plan.params,
        macs=plan.macs,
    )
