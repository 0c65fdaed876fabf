"""``--method prune``: one-shot L1 channel pruning of the teacher (Torch-Pruning), then the same final
distillation as every search method; the baseline the searches must beat."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.methods.base import ChosenStudent, Method
from archcompress.methods.registry import register_method
from archcompress.search import Search

log = logging.getLogger("archcompress")

PRUNE_TOLERANCE = 0.02  # pruning lands within 2% of its target count; aim below the limit by that much
MAX_PRUNE_TRIES = 4


@register_method("prune")
class PruneMethod(Method):
    """Uniform L1 channel pruning to just below the parameter limit; no search."""

    order = 4
    searches = False
    summary = "L1 channel pruning of the teacher to the parameter limit (a baseline, no search)"

    @classmethod
    def validate_config(cls, config: Any) -> None:
        if config.constraints.param_limit(1) is None:
            raise ArchcompressError("--method prune needs a size to prune to: give --target (e.g. 10x) or --max-params")

    def prepare(self) -> None:
        """Prune now (an unreachable size is refused before the run directory exists), under the parameter limit.

        Pruning lands within 2% of the count it aims at, on either side; when it lands over the limit, it aims
        lower by the overshoot and prunes again (a few tries at most).
        """
        limit = self._param_limit()
        aim = max(1, math.floor(limit * (1.0 - PRUNE_TOLERANCE)))  # pruning refuses what it cannot reach
        for _ in range(MAX_PRUNE_TRIES):
            self.pruned = self._prune(aim)
            if self.pruned.params <= limit:
                return
            aim = max(1, math.floor(aim * limit / self.pruned.params * (1.0 - PRUNE_TOLERANCE / 2)))
            log.info("the pruned teacher has %d params, over the limit of %d: pruning again to %d", self.pruned.params,
                     limit, aim)  # fmt: skip

    def make_search(self) -> Search | None:
        return None

    def _param_limit(self) -> int:
        """The most parameters the student may have (``--target`` and ``--max-params`` together)."""
        limit = self.context.config.constraints.param_limit(self.context.state.space.teacher_cost.params)
        if limit is None:
            raise ArchcompressError("--method prune needs a size to prune to: give --target (e.g. 10x) or --max-params")
        return limit

    def _prune(self, target_params: int) -> ChosenStudent:
        from archcompress.methods.pruning import prune_to_params, to_student  # Torch-Pruning, only when used

        state = self.context.state
        shape = state.space.input_shape
        example = torch.zeros(1, *shape).to(state.device)
        pruned = prune_to_params(state.teacher.model, example, target_params, tolerance=PRUNE_TOLERANCE)
        log.info("pruned the teacher: %.1f%% of each layer's channels removed, %d params", 100 * pruned.ratio,
                 pruned.params)  # fmt: skip
        module = to_student(pruned.module.cpu(), shape)
        metadata = {"method": "prune", "pruning_ratio": pruned.ratio, "target_params": target_params}
        limit = self._param_limit()
        why = (f"L1 pruning removed {pruned.ratio:.1%} of every prunable layer's channels, aiming at "
               f"{target_params:,} params, under the limit of {limit:,}")  # fmt: skip
        return ChosenStudent(module, pruned.params, pruned.macs, metadata, why)

    def choose_final(self, results: Sequence[Result]) -> ChosenStudent:
        return self.pruned
