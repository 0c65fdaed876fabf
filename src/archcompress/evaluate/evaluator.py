"""The evaluator: candidates in, results out, through the store (never train twice) and an executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from archcompress.errors import ArchcompressError
from archcompress.evaluate.executors import Executor, Job
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.evaluate.store import ResultKey, ResultStore, StoredResult
from archcompress.evaluate.worker import EvalContext, EvalOutcome, worker_state
from archcompress.space import Candidate, CompressionSpace


@dataclass(frozen=True)
class Result:
    """One evaluated candidate."""

    candidate: Candidate
    candidate_hash: str
    status: str  # ok | invalid | diverged | failed: reason
    val_accuracy: float | None
    params: int | None
    macs: int | None
    train_seconds: float | None
    seed: int
    from_store: bool  # True when an earlier evaluation was reused instead of training again
    latency_ms: float | None = None  # CPU latency at batch 1, measured when the context asks for it

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def dataset_key(context: EvalContext) -> str:
    """The store's data set column: the name plus the split settings that change what ``val`` is."""
    data = context.data
    size = f"|image_size={data.image_size}" if context.dataset.startswith("imagefolder:") else ""
    return f"{context.dataset}|val_fraction={data.val_fraction}|split_seed={data.split_seed}{size}"


class Evaluator:
    """Scores candidates of one teacher's space on ``val`` after a fixed distillation budget.

    Every result is written to the store as soon as it is known, so an interrupted search keeps all
    finished work, and a candidate already in the store (from this run, an earlier one or another search
    method) is returned without training.
    """

    def __init__(
        self,
        context: EvalContext,
        store: ResultStore,
        executor: Executor,
        *,
        seed: int = 0,
        method: str = "",
        space: CompressionSpace | None = None,
        shared_store: ResultStore | None = None,
    ) -> None:
        self.context = context
        self.store = store
        self.shared_store = shared_store  # looked up after ``store``; every new result is written to both
        self.executor = executor
        self.seed = seed
        self.method = method
        # Setting up here also fills the teacher-logit cache before any worker starts.
        self.space = space or worker_state(context).space
        self._dataset = dataset_key(context)
        self._budget = context.budget.key()

    def key(self, candidate_hash: str) -> ResultKey:
        """The store key of a candidate under this evaluator's teacher, data, budget and seed."""
        return ResultKey(self.context.teacher_sha256, self._dataset, self._budget, self.seed, candidate_hash)

    def evaluate(self, candidate: Candidate) -> Result:
        """Evaluate one candidate (or fetch it from the store)."""
        return self.evaluate_many([candidate])[0]

    def evaluate_many(
        self, candidates: Sequence[Candidate], on_result: Callable[[Result], None] | None = None
    ) -> list[Result]:
        """Evaluate candidates in parallel through the executor; results come back in input order.

        Duplicates (by canonical hash) are trained once; ``on_result`` is called as each one finishes.
        """
        hashes = [self.space.candidate_hash(c) for c in candidates]
        known: dict[str, Result] = {}
        jobs: list[Job] = []
        job_hashes: list[str] = []
        job_candidates: list[Candidate] = []
        for candidate, digest in zip(candidates, hashes, strict=True):
            if digest in known or digest in job_hashes:
                continue
            stored = self._lookup(self.key(digest))
            # A failure (a crashed worker, out of memory) may be transient: it is recorded but tried again.
            if stored is not None and not stored.status.startswith("failed"):
                known[digest] = self._from_store(candidate, stored)
                if on_result:
                    on_result(known[digest])
                continue
            jobs.append((self.space.canonical(candidate).to_dict(), self.seed))
            job_hashes.append(digest)
            job_candidates.append(candidate)
        for index, outcome in self.executor.run(self.context, jobs):
            result = self._record(job_candidates[index], job_hashes[index], outcome)
            known[result.candidate_hash] = result
            if on_result:
                on_result(result)
        # Each position gets its own candidate back (a duplicate may be spelled differently from the first).
        return [
            replace(known[digest], candidate=candidate) for candidate, digest in zip(candidates, hashes, strict=True)
        ]

    def _lookup(self, key: ResultKey) -> StoredResult | None:
        stored = self.store.get(key)
        if stored is None and self.shared_store is not None:
            stored = self.shared_store.get(key)
            if stored is not None:
                self.store.put(stored)  # the run's own store lists every result the run used
        return stored

    def _record(self, candidate: Candidate, digest: str, outcome: EvalOutcome) -> Result:
        extra: dict[str, Any] = {"inherited_layers": outcome.inherited_layers, "fresh_layers": outcome.fresh_layers}
        if outcome.latency_ms is not None:
            extra["latency_ms"] = outcome.latency_ms
        stored = StoredResult(
            key=self.key(digest),
            status=outcome.status,
            val_accuracy=outcome.val_accuracy,
            params=outcome.params,
            macs=outcome.macs,
            train_seconds=outcome.train_seconds,
            method=self.method,
            candidate=self.space.canonical(candidate).to_dict(),
            features=self.space.candidate_features(candidate).tolist(),
            extra=extra,
        )
        for store in (self.store, self.shared_store):
            if store is not None:
                store.put(stored)
        return Result(candidate, digest, outcome.status, outcome.val_accuracy, outcome.params, outcome.macs,
                      outcome.train_seconds, self.seed, from_store=False, latency_ms=outcome.latency_ms)  # fmt: skip

    def stored_results(self, store: ResultStore) -> list[Result]:
        """Every finished evaluation in ``store`` of this teacher, data set and budget (any seed, any method),
        oldest first; rows whose candidate does not belong to this space (other space options) are skipped."""
        results = []
        for stored in store.query(self.context.teacher_sha256, self._dataset, self._budget):
            if stored.status.startswith("failed"):
                continue
            try:
                candidate = Candidate.from_dict(stored.candidate)
            except (ArchcompressError, KeyError, TypeError, ValueError):
                continue
            if (
                self.space.check(candidate) is None
                and self.space.candidate_hash(candidate) == stored.key.candidate_hash
            ):
                results.append(replace(self._from_store(candidate, stored), seed=stored.key.seed))
        return results

    def _from_store(self, candidate: Candidate, stored: StoredResult) -> Result:
        latency = stored.extra.get("latency_ms")
        if self.context.latency and latency is None and stored.status == "ok":
            # evaluated earlier without a latency measurement: measure it now (no training needed)
            latency = measure_latency_ms(self.space.build(candidate, inherit=False).module, self.space.input_shape)
            stored = replace(stored, extra={**stored.extra, "latency_ms": latency})
            self.store.put(stored)
        return Result(candidate, stored.key.candidate_hash, stored.status, stored.val_accuracy, stored.params,
                      stored.macs, stored.train_seconds, self.seed, from_store=True, latency_ms=latency)  # fmt: skip
