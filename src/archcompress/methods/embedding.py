"""``--method embedding``: architecture compression by gradient ascent in a learned embedding (Ashok 2019)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from archcompress.evaluate import Evaluator, Result, make_executor
from archcompress.methods.base import Method
from archcompress.methods.registry import register_method
from archcompress.rundir import CODEC_DIR, PRIOR_FILE, RunDir
from archcompress.search import Search
from archcompress.search.embedding import EmbeddingOptions, EmbeddingSearch

log = logging.getLogger("archcompress")


@register_method("embedding", EmbeddingOptions)
class EmbeddingMethod(Method):
    """An encoder-decoder embeds architectures; ascent in the embedding proposes the next candidates."""

    order = 1
    summary = "architecture compression: gradient ascent in a learned architecture embedding"
    own_flags = ("seed-candidates", "fitted-seeds", "round-size", "embedding-objective", "size-weight", "ascent-steps",
                 "step-size", "trust-radius", "codec")  # fmt: skip

    @classmethod
    def config_notes(cls, config: Any) -> list[str]:
        options: EmbeddingOptions = config.options_for(cls.name)
        if config.budget < options.seed_candidates:
            return [f"--budget {config.budget} is below --seed-candidates {options.seed_candidates}: the embedding "
                    "method spends at most half the budget on seed candidates, so few rounds of ascent remain; "
                    "raise --budget or lower --seed-candidates"]  # fmt: skip
        return []

    def make_search(self) -> Search:
        context, config = self.context, self.context.config
        self.prior = self._prior()
        return EmbeddingSearch(context.state.space, self.options, context.teacher, config.budget, config.seed,
                               config.target, self.prior)  # fmt: skip

    def _prior(self) -> list[Result]:
        """Earlier evaluations of this teacher, data set and budget in the ``--store`` (e.g. an N2N run's).

        A resumed run takes exactly the prior its first start took (``prior.json``), so it proposes the same
        candidates even though the shared store now also holds this run's own results.
        """
        context, config = self.context, self.context.config
        shared = context.shared_store
        if shared is None:
            return []
        evaluator = Evaluator(context.eval_context, shared, make_executor("inline"), space=context.state.space)
        known = evaluator.stored_results(shared)
        listed = Path(config.out) / PRIOR_FILE
        if context.resume and listed.is_file():
            wanted = set(json.loads(listed.read_text())["candidate_hashes"])
            known = [r for r in known if r.candidate_hash in wanted]
        unique = {r.candidate_hash: r for r in known}  # one result per candidate (the latest seed's)
        log.info("embedding: %d earlier evaluations in %s serve as training data", len(unique), config.store)
        return list(unique.values())

    def start(self, run: RunDir) -> None:
        if not self.context.resume:
            # --resume must see the same prior, though the shared store then also holds this run's results
            run.write_json(PRIOR_FILE, {"candidate_hashes": [r.candidate_hash for r in self.prior]})

    def save_artifacts(self, run: RunDir) -> None:
        assert isinstance(self.search, EmbeddingSearch)
        self.search.save_codec(run.file(CODEC_DIR))

    def report_extra(self, run: RunDir) -> dict[str, Any]:
        assert isinstance(self.search, EmbeddingSearch)
        return {"embedding": {"rounds": self.search.history, "codec": str(run.file(CODEC_DIR)),
                              "prior_results": len(self.prior)}}  # fmt: skip
