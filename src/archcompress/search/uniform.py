"""The ``uniform`` baseline: one width multiplier for every shrink group (optionally with uniform depth cuts).

The sweep is fixed in advance, from the space alone, so it is deterministic and a resumed run proposes the
same candidates again (and finds the finished ones in the store). It is finite: once every candidate has been
proposed, :meth:`UniformSearch.propose` returns fewer than asked, and then an empty list; the caller must
stop searching when it gets an empty list (see ``docs/methods/baselines.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.space import Candidate, CompressionSpace

DEPTH_STEPS: tuple[int, ...] = (4, 3, 2, 1)  # drop every k-th layer unit: 25%, 33%, 50%, then all of them
_DEPTH_KINDS = ("conv", "linear", "block")


class UniformSearch:
    """Uniform width (and, with ``depth=True``, uniform depth) sweep over the teacher's space.

    Multipliers come from ``space.ratios`` (largest first) and, when ``target`` (teacher params / student
    params) is given, from a continuous multiplier: ``Candidate.ratios`` accepts any value in (0, 1], so the
    largest multiplier whose analytic cost meets the target is found exactly and proposed first, for each
    depth pattern; the ratio-set multipliers follow, closest compression to the target first. Without a
    target the ratio-set multipliers are proposed from the largest student to the smallest. The teacher
    itself (full depth at multiplier 1) is never proposed, nor any candidate twice (by canonical hash).

    Args:
        space: the teacher's compression space.
        seed: unused (the sweep is deterministic); kept so every search is built the same way.
        target: teacher/student parameter ratio to aim at, e.g. ``10.0``; ``None`` sweeps the ratio set.
        depth: also drop every k-th layer unit (k in ``DEPTH_STEPS``), crossed with the multipliers.
        batch_size: proposals per round the caller should ask for (e.g. its worker count).
    """

    name = "uniform"

    def __init__(
        self,
        space: CompressionSpace,
        seed: int = 0,
        target: float | None = None,
        depth: bool = False,
        batch_size: int = 1,
    ) -> None:
        if target is not None and not target > 0:
            raise ArchcompressError(f"the uniform search's target must be a positive ratio such as 10, got {target}")
        self.space = space
        self.seed = seed
        self.target = target
        self.depth = depth
        self.batch_size = max(1, batch_size)
        self._seen: set[str] = {space.candidate_hash(space.teacher_candidate())}
        self._queue: Iterator[Candidate] = self._sweep()

    def propose(self, count: int) -> list[Candidate]:
        """The next ``count`` candidates of the sweep; fewer (down to none) once the sweep is exhausted."""
        proposals: list[Candidate] = []
        for candidate in self._queue:
            digest = self.space.candidate_hash(candidate)
            if digest in self._seen or self.space.check(candidate) is not None:
                continue
            self._seen.add(digest)
            proposals.append(candidate)
            if len(proposals) >= count:
                break
        return proposals

    def observe(self, results: list[Result]) -> None:
        """The uniform sweep learns nothing from results."""

    # --- the sweep -----------------------------------------------------------------------------------

    def depth_masks(self) -> list[tuple[bool, ...]]:
        """Keep masks: all units, then every k-th layer unit dropped for each k in ``DEPTH_STEPS`` (if ``depth``).

        Layer units are removable conv, linear and block units that are not inside another removable unit,
        so a ResNet loses whole blocks and a VGG whole conv layers; pooling and activation units stay.
        """
        count = len(self.space.removable_units)
        masks = [(True,) * count]
        if not self.depth:
            return masks
        units = self.space.units
        layer_positions = []
        for position, index in enumerate(self.space.removable_units):
            unit = units[index]
            outer = unit.parent is None or not units[unit.parent].removable
            if unit.kind in _DEPTH_KINDS and outer:
                layer_positions.append(position)
        for step in DEPTH_STEPS:
            dropped = {p for j, p in enumerate(layer_positions) if j % step == step - 1}
            mask = tuple(p not in dropped for p in range(count))
            if mask not in masks:
                masks.append(mask)
        return masks

    def _sweep(self) -> Iterator[Candidate]:
        masks = self.depth_masks()
        if self.target is not None:
            for mask in masks:
                multiplier = self.largest_multiplier(mask, self.target)
                if multiplier is not None:
                    yield self._candidate(mask, multiplier)
        multipliers = sorted(set(self.space.ratios), reverse=True)
        grid = [self._candidate(mask, m) for mask in masks for m in multipliers]
        grid = [c for c in grid if self.space.check(c) is None]
        teacher_params = self.space.teacher_cost.params
        if self.target is None:
            yield from sorted(grid, key=lambda c: -self.space.cost(c).params)  # stable: full depth first on ties
        else:
            log_target = math.log(self.target)
            yield from sorted(
                grid, key=lambda c: abs(math.log(teacher_params / self.space.cost(c).params) - log_target)
            )

    def largest_multiplier(self, keep: tuple[bool, ...], target: float) -> float | None:
        """The largest multiplier ``m`` with ``teacher_params / params(keep, m) >= target``; None if unreachable."""
        return self.space.largest_uniform_ratio(keep, self.space.teacher_cost.params / target)

    def _candidate(self, keep: tuple[bool, ...], multiplier: float) -> Candidate:
        return self.space.uniform_candidate(multiplier, keep)
