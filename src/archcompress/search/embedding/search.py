"""Architecture-embedding search: learn a continuous embedding of candidates together with predictors of their
accuracy and size, climb the predicted objective in embedding space, decode, evaluate, retrain; repeat.

The design is ours (the paper's abstract only names the idea), close to NAO (Luo et al. 2018); see
``docs/methods/embedding.md``. In short:

1. Seed phase: results already known for this teacher (``prior``, e.g. N2N rollouts from the store) count as
   data; random candidates fill the rest up to ``seed_candidates``. With a ``--target``, a ``fitted_seeds``
   share of them are random removals at the widest uniform width that meets the target (N2N's stage-1
   proposals); the others are stratified over log compression.
2. Rounds of ``batch_size`` proposals: fit the codec model on every result (warm start after the first round),
   encode the teacher and the ``top_k`` best candidates so far, take normalised gradient steps on the predicted
   objective inside a trust region, decode along each path, and propose unseen decodes, best predicted first,
   taking turns between the starting points. Random mutations of the best candidates fill any shortfall.

Everything random goes through generators seeded from ``seed``, so a run is reproducible; with the same results
(from the store, on a resume) the same candidates are proposed again.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.runtime import atomic_open
from archcompress.search.embedding.codec import FeatureNorm, TokenCodec
from archcompress.search.embedding.model import CodecData, CodecModel, Prediction, fit, token_accuracy
from archcompress.search.reward import TeacherStats
from archcompress.space import FEATURE_SCHEMA, Candidate, CompressionSpace

CODEC_FILE = "codec.pt"
CODEC_FORMAT = "archcompress-codec"
CODEC_VERSION = 1
POOL = 32  # random draws per seed candidate, among which the one filling the emptiest compression bin wins
MAX_DRAWS = 200  # random draws per valid candidate before giving up (invalid draws are rejected)
FALLBACK_TRIES = 50  # attempts at an unseen candidate per missing proposal, per kind (mutation, random)

Proposal = tuple[str, Candidate, float | None]  # hash, candidate, predicted accuracy (None: not from the ascent)


@dataclass(frozen=True)
class EmbeddingOptions:
    """Settings of the architecture-embedding search (see ``docs/methods/embedding.md`` for each choice)."""

    batch_size: int = 8  # proposals per round (evaluated in parallel)
    seed_candidates: int = 32  # results before the first round, prior results included
    max_seed_share: float = 0.5  # the seed phase spends at most this share of --budget
    seed_bins: int = 8  # log-compression bins the seed phase fills evenly
    fitted_seeds: float = 0.5  # with a target: share of seeds that are random removals at the target's width
    unlabelled: int = 256  # random candidates that train only the reconstruction (they need no evaluation)
    objective: Literal["linear", "n2n"] = "linear"  # linear: acc - size_weight * ln(params / teacher params)
    size_weight: float = 0.01  # lambda of the linear objective: accuracy traded per e-fold of compression
    target_weight: float = 1.0  # penalty per e-fold of predicted params above teacher params / --target
    top_k: int = 4  # best candidates so far that start an ascent path (besides the teacher)
    ascent_steps: int = 20
    step_size: float = 0.1  # per step, as a share of the typical embedding norm
    trust_radius: float = 1.0  # largest distance from the start, as a share of the typical embedding norm
    hidden: int = 64  # convolution channels and MLP width of the codec model
    embed_channels: int = 16  # channels of z per unit
    layers: int = 2  # convolutions in the encoder and in the decoder
    epochs: int = 60  # first fit (from scratch)
    warm_epochs: int = 30  # later fits continue from the last weights
    lr: float = 3e-3
    weight_decay: float = 1e-4
    train_batch: int = 64
    acc_weight: float = 1.0  # a in recon + a * mse(acc) + b * mse(log params)
    params_weight: float = 1.0  # b
    mutation_rate: float = 0.1  # per-decision change probability of the fallback mutations
    codec: str | None = None  # a codec.pt (or its directory) of an earlier run to start from

    def validate(self) -> None:
        """Reject impossible settings."""
        positive = ("batch_size", "seed_bins", "ascent_steps", "hidden", "embed_channels", "layers", "train_batch")
        for name in positive:
            if getattr(self, name) < 1:
                raise ArchcompressError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("seed_candidates", "unlabelled", "top_k", "epochs", "warm_epochs"):
            if getattr(self, name) < 0:
                raise ArchcompressError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.fitted_seeds <= 1.0:
            raise ArchcompressError(f"--fitted-seeds must be between 0 and 1, got {self.fitted_seeds}")
        if not 0.0 < self.max_seed_share < 1.0:
            raise ArchcompressError(f"--max-seed-share must be between 0 and 1, got {self.max_seed_share}")
        if self.objective not in ("linear", "n2n"):
            raise ArchcompressError(f"--objective must be linear or n2n, got {self.objective!r}")
        for name in ("size_weight", "target_weight", "acc_weight", "params_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ArchcompressError(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        for name in ("step_size", "trust_radius", "lr"):
            if getattr(self, name) <= 0:
                raise ArchcompressError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.mutation_rate <= 1.0:
            raise ArchcompressError(f"--mutation-rate must be in (0, 1], got {self.mutation_rate}")


@dataclass
class _Sample:
    """One known candidate: its tokens and, when it trained, its accuracy and log params."""

    candidate: Candidate
    tokens: Tensor  # (L, D)
    ok: bool
    accuracy: float
    log_params: float  # ln(params / teacher params)


class EmbeddingSearch:
    """Gradient ascent in a learnt embedding of the teacher's compression space (see the module docstring)."""

    name = "embedding"

    def __init__(
        self,
        space: CompressionSpace,
        options: EmbeddingOptions,
        teacher: TeacherStats,
        budget: int,
        seed: int,
        target: float | None = None,
        prior: Sequence[Result] = (),
    ) -> None:
        options.validate()
        if target is not None and target <= 1.0:
            raise ArchcompressError(f"--target must be a compression ratio above 1 (e.g. 10x), got {target}")
        self.space = space
        self.options = options
        self.teacher = teacher
        self.budget = budget
        self.target = target
        self.batch_size = options.batch_size
        self.rng = np.random.default_rng(seed)  # seed-phase draws, unlabelled candidates, mutations
        self.seed = seed  # the model's initialisation and each fit's shuffling derive from it
        loaded = load_codec(Path(options.codec), space) if options.codec else None
        self.codec = loaded[0] if loaded else TokenCodec(space)
        with torch.random.fork_rng(devices=[]):  # initialise the model without touching the global generator
            torch.manual_seed(seed)
            self.model = loaded[1] if loaded else _new_model(self.codec, options)
        self._warm = loaded is not None
        self.ratio_values = self.codec.ratio_values
        self.log_max_ratio = math.log(max(space.max_compression(), 1.0 + 1e-6))
        self.log_limit = -math.log(target) if target is not None else None  # ln(params / teacher params) bound
        self.history: list[dict[str, float]] = []
        self.samples: dict[str, _Sample] = {}  # by hash, in the order they became known
        self.seen: set[str] = set()  # everything known or proposed: never proposed again
        self._pending: list[Proposal] = []  # hash, candidate, predicted accuracy
        self._round = 0
        self._fitted_size = -1  # number of samples at the last fit
        self._fit_stats: dict[str, float] = {}
        self._typical_norm = 1.0
        self._ascended = 0  # proposals of the current round that came from the ascent (not the fallback)
        self.evaluations = 0
        # the teacher is known without evaluating it: a copy of it keeps the teacher's accuracy
        teacher_candidate = space.teacher_candidate()
        self._add(teacher_candidate, teacher.accuracy, space.cost(teacher_candidate).params)
        for result in prior:
            self._add_result(result)
        known_ok = sum(sample.ok for sample in self.samples.values()) - 1  # the teacher is not a seed
        share = math.floor(budget * options.max_seed_share)
        self.seed_evaluations = max(0, min(options.seed_candidates - known_ok, share))
        self._unlabelled = self._draw_unlabelled(options.unlabelled)
        self._unlabelled_tokens = self.codec.encode(self._unlabelled) if self._unlabelled else None

    # --- data ----------------------------------------------------------------------------------------

    def _add(self, candidate: Candidate, accuracy: float | None, params: int | None, ok: bool = True) -> None:
        digest = self.space.candidate_hash(candidate)
        self.seen.add(digest)
        if digest in self.samples:
            return
        good = ok and accuracy is not None and bool(params) and self.space.check(candidate) is None
        tokens = self.codec.encode([candidate])[0]
        log_params = math.log(params / self.teacher.params) if good and params else 0.0
        self.samples[digest] = _Sample(candidate, tokens, good, float(accuracy or 0.0), log_params)

    def _add_result(self, result: Result) -> None:
        # a prior result of another space (wrong lengths) is not data for this one
        with contextlib.suppress(ArchcompressError):
            self._add(result.candidate, result.val_accuracy, result.params, result.ok)

    def _draw_unlabelled(self, count: int) -> list[Candidate]:
        draws = [self._draw() for _ in range(count)]
        return [c for c in draws if c is not None]

    def _draw(self) -> Candidate | None:
        """A random valid candidate of a random compression level (keep probability and width level vary)."""
        space, rng = self.space, self.rng
        k = len(self.ratio_values)
        for _ in range(MAX_DRAWS):
            keep_prob = rng.uniform(0.3, 1.0)
            centre, spread = rng.uniform(-0.5, k - 0.5), rng.uniform(0.0, k / 2)
            index = np.clip(np.rint(centre + spread * rng.standard_normal(len(space.shrink_groups))), 0, k - 1)
            kernel = self.codec.kernel_values
            candidate = Candidate(
                keep=tuple(rng.random(len(space.removable_units)) < keep_prob),
                ratios=tuple(self.ratio_values[int(i)] for i in index),
                kernel_ratios=tuple(rng.choice(kernel, size=len(space.kernel_units))) if kernel else (),
            )
            if space.check(candidate) is None:
                return candidate
        return None

    # --- predictor -----------------------------------------------------------------------------------

    def fit_predictor(self) -> None:
        """Train the codec model on every known result (what each round starts with)."""
        self._fit()

    def predict(self, candidates: Sequence[Candidate]) -> Prediction:
        """The codec model's predicted val accuracy and ``ln(params / teacher params)`` of ``candidates``."""
        with torch.no_grad():
            return self.model.predict(self.model.encode(self.codec.encode(candidates)))

    # --- objective -----------------------------------------------------------------------------------

    def objective(self, accuracy: Tensor, log_params: Tensor) -> Tensor:
        """The (differentiable) objective of accuracy and ``ln(params / teacher params)``, elementwise."""
        options = self.options
        if options.objective == "n2n":
            scale = -self.log_limit if self.log_limit is not None else self.log_max_ratio
            c = (-log_params / scale).clamp(0.0, 1.0)
            value = c * (2.0 - c) * accuracy / self.teacher.accuracy
        else:
            size = log_params if self.log_limit is None else log_params.clamp(min=self.log_limit)
            value = accuracy - options.size_weight * size
        if self.log_limit is not None:
            value = value - options.target_weight * (log_params - self.log_limit).clamp(min=0.0)
        return value

    def _score(self, accuracy: float, log_params: float) -> float:
        return float(self.objective(torch.tensor(accuracy), torch.tensor(log_params)))

    def _ranked(self) -> list[_Sample]:
        """Samples that trained, best objective first (ties: the earlier one)."""
        ok = [s for s in self.samples.values() if s.ok]
        return sorted(ok, key=lambda s: -self._score(s.accuracy, s.log_params))

    # --- proposing -----------------------------------------------------------------------------------

    @property
    def phase(self) -> str:
        """``seed`` until the seed evaluations are done, then ``rounds``."""
        return "seed" if self.evaluations < self.seed_evaluations else "rounds"

    def propose(self, count: int) -> list[Candidate]:
        self._pending = []
        if count < 1:
            return []
        if self.phase == "seed":
            proposals = self._seed(min(count, self.seed_evaluations - self.evaluations))
            self._pending = [(self.space.candidate_hash(c), c, None) for c in proposals]
        else:
            self._fit()
            self._pending = self._round_proposals(count)
        if not self._pending:
            # the space looks exhausted: the best candidate again (the evaluator answers it from the store),
            # so that a caller looping until its budget is spent always makes progress
            best = self._ranked()[0].candidate
            self._pending = [(self.space.candidate_hash(best), best, None)]
        for digest, _, _ in self._pending:
            self.seen.add(digest)
        return [candidate for _, candidate, _ in self._pending]

    def _round_proposals(self, count: int) -> list[Proposal]:
        """Ascent decodes within the target's limit, then mutations of the best within it, then decodes over
        it, then any unseen mutation or random candidate."""
        within, over = self._ascend(count)
        chosen = within[:count]
        if self.log_limit is not None and len(chosen) < count:
            chosen += self._fallback(count - len(chosen), {d for d, _, _ in chosen}, within_limit=True)
        chosen += over[: count - len(chosen)]
        self._ascended = sum(p[2] is not None for p in chosen)
        return chosen + self._fallback(count - len(chosen), {d for d, _, _ in chosen})

    def _bin(self, candidate: Candidate) -> int:
        ratio = self.teacher.params / self.space.cost(candidate).params
        share = math.log(max(ratio, 1.0)) / self.log_max_ratio
        return min(self.options.seed_bins - 1, int(share * self.options.seed_bins))

    def _seed(self, count: int) -> list[Candidate]:
        """Random candidates: with a target, every ``1 / fitted_seeds``-th one a random removal at the target's
        uniform width; the others fill the emptiest log-compression bins (everything known counts)."""
        counts = [0] * self.options.seed_bins
        for sample in self.samples.values():
            if sample.ok:
                counts[self._bin(sample.candidate)] += 1
        chosen: list[Candidate] = []
        chosen_hashes: set[str] = set()
        for position in range(self.evaluations, self.evaluations + count):
            fitted = self._is_fitted_seed(position)
            pool: list[tuple[int, int, Candidate, str]] = []  # (bin count, draw order, candidate, hash)
            for _ in range(POOL):
                candidate = self._draw_fitted() if fitted else self._draw()
                digest = self.space.candidate_hash(candidate) if candidate else ""
                if candidate is not None and digest not in self.seen and digest not in chosen_hashes:
                    pool.append((counts[self._bin(candidate)], len(pool), candidate, digest))
                    if fitted:
                        break  # a fitted seed is not stratified: the first unseen one is taken
            if not pool:
                break
            _, _, candidate, digest = min(pool, key=lambda entry: entry[:2])
            counts[self._bin(candidate)] += 1
            chosen.append(candidate)
            chosen_hashes.add(digest)
        if len(chosen) < count:
            chosen += [c for _, c, _ in self._fallback(count - len(chosen), exclude=chosen_hashes)]
        return chosen

    def _is_fitted_seed(self, position: int) -> bool:
        """Whether seed number ``position`` (from 0) is a fitted one: spread evenly, ``fitted_seeds`` of them."""
        share = self.options.fitted_seeds if self.target is not None else 0.0
        return math.floor((position + 1) * share + 1e-9) > math.floor(position * share + 1e-9)

    def _draw_fitted(self) -> Candidate | None:
        """A random removal (keep probability 0.3 to 1) at the widest uniform width whose student meets the
        target: where N2N's stage 1 puts its proposals, and where students that keep balanced widths lie."""
        assert self.target is not None
        limit = self.teacher.params / self.target
        for _ in range(MAX_DRAWS):
            keep = tuple(self.rng.random(len(self.space.removable_units)) < self.rng.uniform(0.3, 1.0))
            ratio = self.space.largest_uniform_ratio(keep, limit)
            if ratio is not None:
                return self.space.uniform_candidate(ratio, keep)
        return None

    def _data(self) -> CodecData:
        """Every known sample (regression targets where it trained), then the unlabelled candidates."""
        samples = list(self.samples.values())
        candidates = [s.candidate for s in samples] + self._unlabelled
        parts = [torch.stack([s.tokens for s in samples])]
        if self._unlabelled_tokens is not None:
            parts.append(self._unlabelled_tokens)
        extra = len(self._unlabelled)
        return CodecData(
            tokens=torch.cat(parts),
            choices=self.codec.choices(candidates),
            accuracy=torch.tensor([s.accuracy for s in samples] + [0.0] * extra),
            log_params=torch.tensor([s.log_params for s in samples] + [0.0] * extra),
            ok=torch.tensor([s.ok for s in samples] + [False] * extra),
        )

    def _fit(self) -> None:
        """Train the codec model on everything known, unless nothing new came since the last fit."""
        if len(self.samples) == self._fitted_size:
            return
        options = self.options
        started = time.perf_counter()
        data = self._data()
        epochs = options.warm_epochs if self._warm else options.epochs
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._round)
        losses = fit(self.model, data, self.codec.static, epochs, lr=options.lr, weight_decay=options.weight_decay,
                     batch_size=options.train_batch, acc_weight=options.acc_weight,
                     params_weight=options.params_weight, generator=generator)  # fmt: skip
        self._warm = True
        self._fitted_size = len(self.samples)
        labelled = data.subset(torch.arange(len(self.samples)))
        with torch.no_grad():
            z = self.model.encode(labelled.tokens)  # (N, C, L)
            self._typical_norm = float(z.flatten(1).norm(dim=1).mean()) or 1.0
        self._fit_stats = {
            "recon": losses["recon"],
            "acc_mse": losses["acc_mse"],
            "params_mse": losses["params_mse"],
            "token_accuracy": token_accuracy(self.model, labelled, self.codec.static),
            "fit_seconds": time.perf_counter() - started,
            "samples": float(len(self.samples)),
        }

    def _predict_accuracy(self, candidates: Sequence[Candidate]) -> list[float]:
        with torch.no_grad():
            return self.model.predict(self.model.encode(self.codec.encode(candidates))).accuracy.tolist()

    def ascent_paths(self, starts: Sequence[Candidate]) -> list[list[Candidate]]:
        """The decode after each gradient-ascent step from each start: ``ascent_steps`` candidates per start.

        Steps follow the normalised gradient of the predicted objective, ``step_size`` typical embedding norms
        long, and are projected back into the trust region of ``trust_radius`` typical norms around the start.
        """
        options, model = self.options, self.model
        with torch.no_grad():
            z0 = model.encode(self.codec.encode(starts))  # (S, C, L)
        step, radius = options.step_size * self._typical_norm, options.trust_radius * self._typical_norm
        z = z0.clone()
        paths: list[list[Candidate]] = [[] for _ in starts]
        for _ in range(options.ascent_steps):
            z.requires_grad_(True)
            prediction = model.predict(z)
            value = self.objective(prediction.accuracy, prediction.log_params).sum()
            (grad,) = torch.autograd.grad(value, z)
            with torch.no_grad():
                norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1)
                z = z.detach() + step * grad / norm
                offset = z - z0
                distance = offset.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1)
                z = z0 + offset * (radius / distance).clamp(max=1.0)
                keep, ratio, kernel = model.decode(z, self.codec.static)
            for path, candidate in zip(paths, self.codec.decode_batch(keep, ratio, kernel), strict=True):
                path.append(candidate)
        return paths

    def _ascend(self, count: int) -> tuple[list[Proposal], list[Proposal]]:
        """Unseen decodes along gradient-ascent paths from the teacher and the best candidates so far, up to
        ``count`` within the target's parameter limit and up to ``count`` over it (all within without a target)."""
        teacher = self.space.teacher_candidate()
        best = [s.candidate for s in self._ranked() if s.candidate != teacher][: self.options.top_k]
        paths: list[list[tuple[str, Candidate]]] = []
        found: set[str] = set()
        for decodes in self.ascent_paths([teacher, *best]):
            paths.append([])
            for candidate in decodes:
                digest = self.space.candidate_hash(candidate)
                if digest not in self.seen and digest not in found:
                    found.add(digest)
                    paths[-1].append((digest, candidate))
        decoded = [entry for path in paths for entry in path]
        if not decoded:
            return [], []
        accuracy = self._predict_accuracy([c for _, c in decoded])
        score: dict[str, tuple[bool, float, float]] = {}
        for (digest, candidate), acc in zip(decoded, accuracy, strict=True):
            log_params = math.log(self.space.cost(candidate).params / self.teacher.params)  # exact, analytic
            violates = self.log_limit is not None and log_params > self.log_limit
            score[digest] = (violates, -self._score(acc, log_params), acc)
        for path in paths:
            path.sort(key=lambda entry: score[entry[0]][:2])
        # take turns between the starting points, each offering its best remaining decode
        chosen: tuple[list[Proposal], list[Proposal]] = ([], [])
        for over_limit, picked in ((False, chosen[0]), (True, chosen[1])):
            queues = [[entry for entry in path if score[entry[0]][0] == over_limit] for path in paths]
            while len(picked) < count and any(queues):
                offers = [queue.pop(0) for queue in queues if queue]
                offers.sort(key=lambda entry: score[entry[0]][:2])
                for digest, candidate in offers[: count - len(picked)]:
                    picked.append((digest, candidate, score[digest][2]))
        return chosen

    def _fallback(self, count: int, exclude: set[str] | None = None, within_limit: bool = False) -> list[Proposal]:
        """Up to ``count`` unseen mutations of the best candidates, then unseen random candidates (only
        mutations, and only those within the target's parameter limit, when ``within_limit``)."""
        if count < 1:
            return []
        taken = set(exclude or ())
        parents = [s.candidate for s in self._ranked()][: max(1, self.options.top_k)]
        makers = [lambda i: self._mutate(parents[i % len(parents)])]
        if not within_limit:
            makers.append(lambda _: self._draw())
        chosen: list[Proposal] = []
        for make in makers:
            attempt = 0
            while len(chosen) < count and attempt < FALLBACK_TRIES * count:
                candidate = make(attempt)
                attempt += 1
                if candidate is None or (within_limit and not self._within_limit(candidate)):
                    continue
                digest = self.space.candidate_hash(candidate)
                if digest not in self.seen and digest not in taken:
                    taken.add(digest)
                    chosen.append((digest, candidate, None))
        return chosen

    def _within_limit(self, candidate: Candidate) -> bool:
        """Whether the candidate's exact parameter count meets the target (always, without one)."""
        if self.log_limit is None:
            return True
        return math.log(self.space.cost(candidate).params / self.teacher.params) <= self.log_limit

    def _mutate(self, parent: Candidate) -> Candidate | None:
        """Flip keep flags and move ratios one step on the ratio set, each with ``mutation_rate``."""
        rng, rate, values = self.rng, self.options.mutation_rate, self.ratio_values
        snapped = self.codec.snap(parent)
        keep = [k != (rng.random() < rate) for k in snapped.keep]
        ratios = []
        for ratio in snapped.ratios:
            index = values.index(ratio)
            if rng.random() < rate:
                index = int(np.clip(index + rng.choice((-1, 1)), 0, len(values) - 1))
            ratios.append(values[index])
        candidate = Candidate(tuple(keep), tuple(ratios), snapped.kernel_ratios)
        return candidate if self.space.check(candidate) is None else None

    # --- learning ------------------------------------------------------------------------------------

    def observe(self, results: list[Result]) -> None:
        if len(results) != len(self._pending):
            raise ValueError(f"observe() got {len(results)} results for {len(self._pending)} proposals")
        phase = self.phase
        achieved: list[float] = []  # objective of each proposal that trained
        predicted: list[tuple[_Sample, float]] = []  # (sample, predicted accuracy) of the ascent's proposals
        for result, (_, _, predicted_acc) in zip(results, self._pending, strict=True):
            self._add_result(result)
            sample = self.samples.get(self.space.candidate_hash(result.candidate))
            if sample is None or not sample.ok:
                continue
            achieved.append(self._score(sample.accuracy, sample.log_params))
            if predicted_acc is not None:
                predicted.append((sample, predicted_acc))
        self.evaluations += len(results)
        ranked = self._ranked()
        entry: dict[str, float] = {
            "round": float(self._round + 1 if phase == "rounds" else 0),
            "evaluations": float(self.evaluations),
            "best_objective": self._score(ranked[0].accuracy, ranked[0].log_params) if ranked else math.nan,
            "batch_best_objective": max(achieved, default=math.nan),
            "batch_ok_share": len(achieved) / max(len(results), 1),
        }
        if phase == "rounds":
            entry.update(self._fit_stats)
            entry["ascent_share"] = self._ascended / max(len(results), 1)
            entry.update(self._prediction_errors(predicted))
            entry["achieved_objective"] = float(np.mean(achieved)) if achieved else math.nan
            self._round += 1
        self.history.append(entry)
        self._pending = []

    def revise(self, results: list[Result]) -> None:
        """Later, higher-fidelity results of earlier candidates (multi-fidelity promotions): the predictor's
        targets and the ranking of starts take them, and the next round refits."""
        for result in results:
            sample = self.samples.get(result.candidate_hash)
            if sample is not None and sample.ok and result.ok and result.val_accuracy is not None:
                sample.accuracy = float(result.val_accuracy)
                self._fitted_size = -1

    def _prediction_errors(self, predicted: list[tuple[_Sample, float]]) -> dict[str, float]:
        """Predicted vs. achieved for the ascent's proposals that trained (NaN when there are none)."""
        if not predicted:
            return {"pred_acc_mae": math.nan, "pred_log_params_mae": math.nan, "pred_objective": math.nan}
        with torch.no_grad():
            tokens = torch.stack([sample.tokens for sample, _ in predicted])
            log_params_hat = self.model.predict(self.model.encode(tokens)).log_params.tolist()
        return {
            "pred_acc_mae": float(np.mean([abs(acc - s.accuracy) for s, acc in predicted])),
            "pred_log_params_mae": float(
                np.mean([abs(p - s.log_params) for (s, _), p in zip(predicted, log_params_hat, strict=True)])
            ),
            "pred_objective": float(np.mean([self._score(acc, s.log_params) for s, acc in predicted])),
        }

    # --- saving --------------------------------------------------------------------------------------

    def save_codec(self, directory: Path) -> Path:
        """Write the codec model with its token layout and feature schema to ``directory/codec.pt``, atomically."""
        payload = {
            "format": CODEC_FORMAT,
            "version": CODEC_VERSION,
            "config": dict(self.model.config),
            "state_dict": self.model.state_dict(),
            **self.codec.state(),
            "options": asdict(self.options),
        }
        path = Path(directory) / CODEC_FILE
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)
        return path


def _new_model(codec: TokenCodec, options: EmbeddingOptions) -> CodecModel:
    return CodecModel(codec.token_dim, codec.static_dim, len(codec.ratio_values), len(codec.kernel_values),
                      hidden=options.hidden, embed_channels=options.embed_channels, layers=options.layers)  # fmt: skip


def load_codec(path: Path, space: CompressionSpace) -> tuple[TokenCodec, CodecModel]:
    """A saved codec (``codec.pt`` or its directory) for ``space``; refuses files made for another feature
    schema or ratio set. The model is convolutional, so a codec of one teacher loads for another one."""
    path = Path(path)
    if path.is_dir():
        path = path / CODEC_FILE
    if not path.is_file():
        raise ArchcompressError(f"--codec {path} does not exist (expected a codec.pt or the codec/ directory of a run)")
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArchcompressError(f"--codec {path} is not a readable codec file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CODEC_FORMAT:
        raise ArchcompressError(f"--codec {path} is not an archcompress codec file (no {CODEC_FORMAT!r} format tag)")
    schema = payload.get("feature_schema", {})
    if schema.get("version") != FEATURE_SCHEMA.version or list(schema.get("names", [])) != list(FEATURE_SCHEMA.names):
        raise ArchcompressError(
            f"--codec {path} was trained on unit features of schema version {schema.get('version')!r}, this "
            f"archcompress uses version {FEATURE_SCHEMA.version}: train the codec again with this version"
        )
    norm = payload.get("norm", {})
    try:
        codec = TokenCodec(space, FeatureNorm(tuple(norm.get("mean", ())), tuple(norm.get("std", ()))))
    except ValueError as exc:
        raise ArchcompressError(f"--codec {path} has a malformed feature normalisation ({exc})") from exc
    saved = (tuple(payload.get("ratio_values", ())), tuple(payload.get("kernel_values", ())))
    if saved != (codec.ratio_values, codec.kernel_values):
        raise ArchcompressError(
            f"--codec {path} encodes width ratios {list(saved[0])} and kernel ratios {list(saved[1])}, but this "
            f"space has {list(codec.ratio_values)} and {list(codec.kernel_values)}: use the same ratio sets"
        )
    try:
        model = CodecModel(**payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ArchcompressError(f"--codec {path} does not fit this codec model ({exc})") from exc
    model.eval()
    return codec, model
