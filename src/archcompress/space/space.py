"""The teacher-relative compression space: units, candidates, validity, cost and build, in one object."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space.build import BuildResult, Inheritor, build_plan
from archcompress.space.candidate import Candidate
from archcompress.space.cost import Cost
from archcompress.space.ir import StudentArch
from archcompress.space.resolve import InvalidCandidateError, Plan, canonical, in_student, resolve
from archcompress.space.rules import DEFAULT_RULES, RemovalRules
from archcompress.space.trace import TracedLayer, trace_model
from archcompress.space.units import FEATURE_SCHEMA, ChannelGroup, Structure, Unit, build_structure

# [N2N code] shrink ratios; 0.5 is repeated on purpose, a prior toward halving when sampled uniformly
DEFAULT_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DEFAULT_MIN_CHANNELS = 10  # [N2N code] keep at least 10 filters (all of them if the teacher has fewer)


class CompressionSpace:
    """All students reachable from one teacher by removing units and shrinking channel groups (and kernels).

    Build it with :meth:`from_model`. The space keeps references to the teacher's modules (for weight
    inheritance), not copies: changing the teacher's weights afterwards changes what :meth:`build` copies.
    """

    def __init__(
        self,
        structure: Structure,
        modules: dict[str, nn.Module],
        *,
        ratios: Sequence[float],
        kernel_ratios: Sequence[float],
        min_channels: int,
        rules: RemovalRules,
    ) -> None:
        self.structure = structure
        self.ratios = tuple(float(r) for r in ratios)
        self.kernel_ratios = tuple(float(r) for r in kernel_ratios)
        self.min_channels = min_channels
        self.rules = rules
        self._inheritor = Inheritor(structure, modules)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        input_shape: Sequence[int],
        *,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        kernel_ratios: Sequence[float] | None = None,
        min_channels: int = DEFAULT_MIN_CHANNELS,
        rules: RemovalRules = DEFAULT_RULES,
    ) -> CompressionSpace:
        """Trace ``model`` for per-sample ``input_shape`` (e.g. ``(3, 32, 32)``) and derive its space.

        Args:
            ratios: width ratios a search picks from, per shrinkable channel group.
            kernel_ratios: kernel-size ratios for plain convs; ``None`` leaves kernels out of the space.
            min_channels: a shrunk group keeps at least this many channels (all, if the teacher has fewer).
            rules: which units may be removed (default: the N2N rule set, see ``rules.py``).
        """
        _check_ratio_set("ratios", ratios)
        if kernel_ratios is not None:
            _check_ratio_set("kernel_ratios", kernel_ratios)
        if min_channels < 1:
            raise ArchcompressError(f"min_channels must be at least 1, got {min_channels}")
        shape = tuple(int(d) for d in input_shape)
        structure = build_structure(trace_model(model, shape), shape, rules, kernel_ratios is not None)
        if not any(structure.produces):
            raise ArchcompressError(
                "the model has no Conv1d/Conv2d or Linear layer on its forward path: there is nothing to compress"
            )
        modules = {layer.source: _source_module(model, layer.source) for layer in structure.layers if layer.source}
        return cls(
            structure,
            modules,
            ratios=ratios,
            kernel_ratios=kernel_ratios or (),
            min_channels=min_channels,
            rules=rules,
        )

    # --- what the space is made of -------------------------------------------------------------------

    @property
    def units(self) -> tuple[Unit, ...]:
        """Units in pre-order (a block before its body and shortcut units)."""
        return self.structure.units

    @property
    def layers(self) -> tuple[TracedLayer, ...]:
        """Teacher layers, in order; units refer to them by index."""
        return self.structure.layers

    @property
    def groups(self) -> tuple[ChannelGroup, ...]:
        """Teacher channel groups (fixed ones included)."""
        return self.structure.groups

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape the teacher was traced with."""
        return self.structure.input_shape

    @property
    def removable_units(self) -> tuple[int, ...]:
        """Unit index of each entry of ``Candidate.keep``."""
        return self.structure.removable

    @property
    def shrink_groups(self) -> tuple[int, ...]:
        """Channel group index of each entry of ``Candidate.ratios``."""
        return self.structure.shrinkable

    @property
    def kernel_units(self) -> tuple[int, ...]:
        """Unit index of each entry of ``Candidate.kernel_ratios``."""
        return self.structure.kernel_units

    @property
    def teacher_cost(self) -> Cost:
        """Parameters and MACs of the traced teacher (layers the forward pass does not use are not counted)."""
        return Cost(self.structure.params, self.structure.macs)

    def features(self) -> np.ndarray:
        """Unit feature matrix, ``(num_units, len(FEATURE_SCHEMA))`` float32."""
        return np.array([u.features for u in self.units], dtype=np.float32)

    def candidate_features(self, candidate: Candidate) -> np.ndarray:
        """Per-unit tokens: unit features, then ``FEATURE_SCHEMA.action_names`` from the canonical candidate.

        ``kept`` is 1 for units in the student; ``width_ratio`` is the kept fraction of the unit's channel
        group (1 where the group is fixed); ``kernel_ratio`` that of its kernel (1 where not shrinkable);
        all three are 0 for removed units. Works for invalid candidates too. Shape
        ``(num_units, len(FEATURE_SCHEMA) + len(FEATURE_SCHEMA.action_names))``, float32.
        """
        canonical_candidate = self.canonical(candidate)
        present = in_student(self.structure, canonical_candidate)
        actions = np.zeros((len(self.units), len(FEATURE_SCHEMA.action_names)), dtype=np.float32)
        for unit in self.units:
            if present[unit.index]:
                width = 1.0 if unit.shrink_group is None else canonical_candidate.ratios[unit.shrink_group]
                kernel = 1.0 if unit.kernel_index is None else canonical_candidate.kernel_ratios[unit.kernel_index]
                actions[unit.index] = (1.0, width, kernel)
        return np.concatenate([self.features(), actions], axis=1)

    # --- candidates ----------------------------------------------------------------------------------

    def teacher_candidate(self) -> Candidate:
        """Keep everything at full width: builds a copy of the teacher."""
        return self.uniform_candidate(1.0)

    def uniform_candidate(self, ratio: float, keep: tuple[bool, ...] | None = None) -> Candidate:
        """Shrink every group by the same ratio (the ``uniform`` baseline); keep every unit unless ``keep``."""
        return Candidate(
            keep=keep if keep is not None else (True,) * len(self.removable_units),
            ratios=(ratio,) * len(self.shrink_groups),
            kernel_ratios=(1.0,) * len(self.kernel_units),
        )

    def largest_uniform_ratio(self, keep: tuple[bool, ...], max_params: float) -> float | None:
        """The largest uniform ratio whose student (with ``keep``) has at most ``max_params``; None if none has.

        Widths are ``round(ratio * width)``, so the answer is searched among the exact fractions
        ``k / width`` of the shrink groups' widths, by bisection on the analytic cost (params grow with the
        ratio).
        """
        widths = {self.groups[g].width for g in self.shrink_groups}
        points = sorted({k / w for w in widths for k in range(1, w + 1)}) or [1.0]

        def fits(ratio: float) -> bool:
            candidate = self.uniform_candidate(ratio, keep)
            return self.check(candidate) is None and self.cost(candidate).params <= max_params

        low, high = 0, len(points)
        while low < high:
            middle = (low + high) // 2
            if fits(points[middle]):
                low = middle + 1
            else:
                high = middle
        return points[low - 1] if low > 0 else None

    def sample(
        self, rng: np.random.Generator | int | None = None, *, keep_prob: float = 0.5, max_tries: int = 1000
    ) -> Candidate:
        """A random valid candidate: keep flags ~ Bernoulli(``keep_prob``), ratios uniform over the ratio list.

        Invalid draws are rejected, so the result is uniform over the valid candidates of that proposal.
        """
        generator = np.random.default_rng(rng)
        for _ in range(max_tries):
            candidate = Candidate(
                keep=tuple(generator.random(len(self.removable_units)) < keep_prob),
                ratios=tuple(generator.choice(self.ratios, size=len(self.shrink_groups))),
                kernel_ratios=tuple(
                    generator.choice(self.kernel_ratios, size=len(self.kernel_units)) if self.kernel_units else ()
                ),
            )
            if self.check(candidate) is None:
                return candidate
        raise ArchcompressError(
            f"no valid candidate in {max_tries} random draws: raise keep_prob (now {keep_prob}) or use larger ratios"
        )

    def canonical(self, candidate: Candidate) -> Candidate:
        """The candidate with irrelevant entries reset and ratios replaced by the exact kept fraction."""
        try:
            return canonical(self.structure, candidate, self.min_channels)
        except OverflowError as exc:  # a ratio like 1e305 times a width is no channel count
            raise InvalidCandidateError(f"invalid candidate: a ratio is out of range ({exc})") from None

    def candidate_hash(self, candidate: Candidate) -> str:
        """Canonical hash (16 hex digits): equal for candidates that give the same student."""
        text = self.canonical(candidate).to_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # --- validity, cost, build -----------------------------------------------------------------------

    def check(self, candidate: Candidate) -> str | None:
        """``None`` for a valid candidate, else the reason it cannot form a working network (no build)."""
        try:
            resolve(self.structure, candidate, self.min_channels)
        except InvalidCandidateError as exc:
            return str(exc)
        return None

    def plan(self, candidate: Candidate) -> Plan:
        """Resolve a candidate into the student's architecture and exact cost; raises if invalid."""
        try:
            return resolve(self.structure, candidate, self.min_channels)
        except InvalidCandidateError as exc:
            raise InvalidCandidateError(f"invalid candidate: {exc}") from None

    def arch(self, candidate: Candidate) -> StudentArch:
        """The student's architecture IR."""
        return self.plan(candidate).arch

    def cost(self, candidate: Candidate) -> Cost:
        """Exact parameters and MACs of the student, computed without building it."""
        plan = self.plan(candidate)
        return Cost(plan.params, plan.macs)

    def build(self, candidate: Candidate, inherit: bool = True) -> BuildResult:
        """Build the student as a plain module (CPU, train mode); ``inherit=False`` initialises it freshly."""
        return build_plan(self.plan(candidate), self._inheritor if inherit else None)

    def max_compression(self, objective: str = "params") -> float:
        """The largest teacher/student size ratio the space allows (params or MACs), estimated from the
        uniformly narrowest student with and without every removable unit."""
        narrowest = self.uniform_candidate(min(self.ratios))
        options = (narrowest, Candidate((False,) * len(narrowest.keep), narrowest.ratios, narrowest.kernel_ratios))
        teacher, best = self.teacher_cost, 1.0
        for candidate in options:
            if self.check(candidate) is None:
                cost = self.cost(candidate)
                ratio = teacher.params / cost.params if objective == "params" else teacher.macs / max(cost.macs, 1)
                best = max(best, ratio)
        return best

    def summary(self) -> dict[str, object]:
        """JSON-able unit table and totals (what ``archcompress inspect`` prints)."""
        from archcompress.space.inspect import summary

        return summary(self)

    def __repr__(self) -> str:
        return (
            f"CompressionSpace(units={len(self.units)}, removable={len(self.removable_units)}, "
            f"shrink_groups={len(self.shrink_groups)}, kernel_units={len(self.kernel_units)}, "
            f"params={self.structure.params:,}, macs={self.structure.macs:,})"
        )


class _ParameterHolder(nn.Module):
    """A teacher parameter used directly in the forward (e.g. ConvNeXt's layer scale), as ``.weight``."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight  # the teacher's own parameter, not a copy


def _source_module(model: nn.Module, path: str) -> nn.Module:
    """The module at ``path``, or a holder for the parameter at ``path``."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return _ParameterHolder(model.get_parameter(path))


def _check_ratio_set(name: str, values: Sequence[float]) -> None:
    if not values or not all(0 < float(v) <= 1 for v in values):
        raise ArchcompressError(f"{name} must be a non-empty list of numbers in (0, 1], got {list(values)}")
