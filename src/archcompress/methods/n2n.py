"""``--method n2n``: N2N learning (Ashok et al., ICLR 2018), the search in ``search/n2n``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from archcompress.methods.base import Method
from archcompress.methods.registry import register_method
from archcompress.rundir import POLICIES_DIR, RunDir
from archcompress.search import Search
from archcompress.search.n2n.search import PAPER_SHRINK_LR, N2NOptions, N2NSearch


@register_method("n2n", N2NOptions)
class N2NMethod(Method):
    """A removal policy, then a shrink policy, trained by REINFORCE on the distilled students' reward."""

    order = 0
    summary = "N2N learning: RL policies remove layers, then shrink the rest (the paper's method)"
    own_flags = ("rollouts", "stage1-share", "stage1-width", "stage2-bases", "stall-updates", "reward",
                 "objective", "constraint", "policy", "fit-to-limit", "transfer-temperature",
                 "transfer-anneal", "transfer-reset", "transfer-keep", "policy-features")  # fmt: skip

    @classmethod
    def preset_options(cls, preset: str) -> N2NOptions:
        """``paper``: the authors' shrink learning rate, full-width stage 1, no fitting of proposals to the limit."""
        if preset == "paper":
            return replace(N2NOptions(), shrink_lr=PAPER_SHRINK_LR, stage1_width="full", fit_to_limit=False)
        return N2NOptions()

    @classmethod
    def objective_for(cls, config: Any) -> str:
        return str(config.options_for(cls.name).objective)

    def make_search(self) -> Search:
        context, config = self.context, self.context.config
        return N2NSearch(context.state.space, self.options, context.teacher, config.budget, config.seed,
                         constraints=config.constraints)  # fmt: skip

    def save_artifacts(self, run: RunDir) -> None:
        assert isinstance(self.search, N2NSearch)
        run.file(POLICIES_DIR).mkdir(exist_ok=True)
        self.search.save_policies(run.file(POLICIES_DIR))

    def report_extra(self, run: RunDir) -> dict[str, Any]:
        assert isinstance(self.search, N2NSearch)
        return {"n2n": {"updates": self.search.history, "policies": str(run.file(POLICIES_DIR))}}
