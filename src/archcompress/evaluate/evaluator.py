"""The evaluator: candidates in, results out, through the store (never train twice) and an executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from archcompress.errors import ArchcompressError
from archcompress.evaluate.executors import Executor, Job
from archcompress.evaluate.latency import measure_latency_ms
from archcompress.evaluate.rungs import DEFAULT_PROMOTE, Ladder, checkpoint_path, remove_checkpoints
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
    rung: int = 0  # the fidelity of this result: the index of its rung (0 without rungs)
    epochs: int | None = None  # epochs the candidate had trained when it was scored

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def val_accuracy_score(result: Result) -> float | None:
    """The default promotion score: val accuracy of a trained candidate (None: not promotable)."""
    return result.val_accuracy if result.ok else None


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

    With ``budget.rungs`` the evaluation is multi-fidelity (:mod:`archcompress.evaluate.rungs`): a new candidate
    is scored at the first rung, and the top ``promote`` fraction of each rung by ``score`` trains on to the next
    one, asynchronously, while other jobs run. Each rung's result is stored under its own budget key; a search
    gets back each candidate's best fidelity so far.
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
        promote: float = DEFAULT_PROMOTE,
        score: Callable[[Result], float | None] = val_accuracy_score,
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
        self.budget = context.budget
        self.score = score  # ranks a rung's results for promotion; None: never promoted (e.g. over the size limit)
        self.ladder = Ladder(self.budget.top_rung, promote)
        self._best: dict[str, Result] = {}  # by hash: the highest-rung result known in this search
        self._candidates: dict[str, Candidate] = {}
        self._failures: dict[str, Result] = {}  # the last failure of each candidate (tried again when proposed again)

    def key(self, candidate_hash: str, rung: int = 0) -> ResultKey:
        """The store key of a candidate under this evaluator's teacher, data, budget, seed (and rung)."""
        budget = self.budget.key(rung)
        return ResultKey(self.context.teacher_sha256, self._dataset, budget, self.seed, candidate_hash)

    def evaluate(self, candidate: Candidate) -> Result:
        """Evaluate one candidate (or fetch it from the store)."""
        return self.evaluate_many([candidate])[0]

    def evaluate_many(
        self, candidates: Sequence[Candidate], on_result: Callable[[Result], None] | None = None
    ) -> list[Result]:
        """Evaluate candidates in parallel through the executor; results come back in input order.

        Duplicates (by canonical hash) are trained once; ``on_result`` is called as each result arrives,
        promotions included. Each candidate comes back at the best fidelity known when the call ends.
        """
        hashes = [self.space.candidate_hash(c) for c in candidates]
        jobs: list[Job] = []
        job_keys: list[tuple[str, int]] = []  # (hash, rung) of each job
        in_call: set[str] = set()
        repeated: set[str] = set()  # evaluated earlier in this search: handed back as from the store
        for candidate, digest in zip(candidates, hashes, strict=True):
            if digest in in_call:
                continue
            in_call.add(digest)
            if digest in self._best:
                repeated.add(digest)
                if on_result:
                    on_result(replace(self._best[digest], candidate=candidate, from_store=True))
                continue
            self._candidates[digest] = candidate
            known = self._stored_rungs(candidate, digest)
            if known is not None:
                if on_result:
                    on_result(known)
                continue
            jobs.append((self.space.canonical(candidate).to_dict(), self.seed, 0))
            job_keys.append((digest, 0))
        self._promote(jobs, job_keys)  # results found in the store may already earn promotions
        for index, outcome in self.executor.run(self.context, jobs):
            digest, rung = job_keys[index]
            result = self._record(self._candidates[digest], digest, outcome, rung)
            self._note(result)
            if on_result:
                on_result(result)
            self._promote(jobs, job_keys)  # appended jobs run in this same executor call
        # Each position gets its own candidate back (a duplicate may be spelled differently from the first).
        return [
            replace(self.best_known(digest, candidate), from_store=True) if digest in repeated
            else self.best_known(digest, candidate)
            for candidate, digest in zip(candidates, hashes, strict=True)
        ]  # fmt: skip

    def best_known(self, digest: str, candidate: Candidate | None = None) -> Result:
        """The highest-fidelity result of an evaluated candidate (with ``candidate`` as its spelling); a candidate
        whose every attempt failed has its failure."""
        best = self._best.get(digest) or self._failures[digest]
        return best if candidate is None else replace(best, candidate=candidate)

    def at_best_fidelity(self, results: Sequence[Result]) -> list[Result]:
        """``results`` with each one replaced by its candidate's highest-fidelity result (promotions that came
        after it included)."""
        return [self.best_known(r.candidate_hash, r.candidate) if r.candidate_hash in self._best else r
                for r in results]  # fmt: skip

    def _stored_rungs(self, candidate: Candidate, digest: str) -> Result | None:
        """Load a candidate's stored results, rung by rung, into the ladder; its best one, or None if it must
        be trained. A failure (a crashed worker, out of memory) may be transient: it is recorded, tried again."""
        for rung in range(self.budget.top_rung + 1):
            stored = self._lookup(self.key(digest, rung))
            if stored is None or stored.status.startswith("failed"):
                break
            self._note(self._from_store(candidate, stored, rung))
        return self._best.get(digest)

    def _note(self, result: Result) -> None:
        """Enter a result in the ladder and keep the candidate's highest-fidelity result."""
        if result.status.startswith("failed"):
            self._failures[result.candidate_hash] = result
            return
        digest = result.candidate_hash
        score = self.score(result)
        self.ladder.add(result.rung, digest, score)
        if digest not in self._best or result.rung >= self._best[digest].rung:
            self._best[digest] = result
        if score is None and self.context.checkpoint_dir is not None and not result.from_store:
            # never promoted (over a size limit, or it did not train): its checkpoint would only take disk space
            fingerprint = self.context.fingerprint()
            remove_checkpoints(
                [checkpoint_path(self.context.checkpoint_dir, fingerprint, self.seed, digest, result.rung)]
            )

    def _promote(self, jobs: list[Job], job_keys: list[tuple[str, int]]) -> None:
        """Append a job for every promotion the ladder now allows."""
        for digest, rung in self.ladder.promotions():
            jobs.append((self.space.canonical(self._candidates[digest]).to_dict(), self.seed, rung))
            job_keys.append((digest, rung))

    def _lookup(self, key: ResultKey) -> StoredResult | None:
        stored = self.store.get(key)
        if stored is None and self.shared_store is not None:
            stored = self.shared_store.get(key)
            if stored is not None:
                self.store.put(stored)  # the run's own store lists every result the run used
        return stored

    def _record(self, candidate: Candidate, digest: str, outcome: EvalOutcome, rung: int = 0) -> Result:
        extra: dict[str, Any] = {"inherited_layers": outcome.inherited_layers, "fresh_layers": outcome.fresh_layers}
        if outcome.latency_ms is not None:
            extra["latency_ms"] = outcome.latency_ms
        if self.budget.rungs:
            extra.update(rung=rung, epochs=outcome.epochs, continued=outcome.continued)
        stored = StoredResult(
            key=self.key(digest, rung),
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
                      outcome.train_seconds, self.seed, from_store=False, latency_ms=outcome.latency_ms, rung=rung,
                      epochs=outcome.epochs if self.budget.rungs else self.budget.epochs)  # fmt: skip

    def stored_results(self, store: ResultStore) -> list[Result]:
        """Every finished evaluation in ``store`` of this teacher, data set and budget (any seed, any method),
        oldest first, each candidate once at its highest rung; rows whose candidate does not belong to this
        space (other space options) are skipped."""
        best: dict[tuple[int, str], Result] = {}
        for rung in range(self.budget.top_rung + 1):
            for result in self._stored_at(store, rung):
                best[result.seed, result.candidate_hash] = result  # a higher rung replaces a lower one
        return sorted(best.values(), key=lambda r: r.rung)  # the first rung in store order, then promotions

    def _stored_at(self, store: ResultStore, rung: int) -> list[Result]:
        results = []
        for stored in store.query(self.context.teacher_sha256, self._dataset, self.budget.key(rung)):
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
                results.append(replace(self._from_store(candidate, stored, rung), seed=stored.key.seed))
        return results

    def _from_store(self, candidate: Candidate, stored: StoredResult, rung: int = 0) -> Result:
        latency = stored.extra.get("latency_ms")
        if self.context.latency and latency is None and stored.status == "ok":
            # evaluated earlier without a latency measurement: measure it now (no training needed)
            latency = measure_latency_ms(self.space.build(candidate, inherit=False).module, self.space.input_shape)
            stored = replace(stored, extra={**stored.extra, "latency_ms": latency})
            self.store.put(stored)
        epochs = stored.extra.get("epochs", self.budget.rung_epochs(rung))
        return Result(candidate, stored.key.candidate_hash, stored.status, stored.val_accuracy, stored.params,
                      stored.macs, stored.train_seconds, self.seed, from_store=True, latency_ms=latency, rung=rung,
                      epochs=epochs)  # fmt: skip
