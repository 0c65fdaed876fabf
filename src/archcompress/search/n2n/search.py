"""N2N learning as a search: stage 1 removes units with a bidirectional-LSTM policy, stage 2 shrinks the
remaining channel groups with an autoregressive-LSTM policy; both learn by REINFORCE from the reward.

Resuming needs no search checkpoint: with the same seed the policies propose the same rollouts, every
finished evaluation comes back from the result store with the same reward, and the updates replay exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.runtime import atomic_open
from archcompress.search.n2n.policies import RemovalPolicy, ShrinkPolicy
from archcompress.search.n2n.reinforce import REMOVAL_LR, SHRINK_LR, Reinforce
from archcompress.search.reward import INVALID_REWARD, annealed_penalty, log_compression
from archcompress.space import FEATURE_SCHEMA, Candidate, CompressionSpace

PAPER_SHRINK_LR = 0.1  # [N2N code]; the paper preset uses it, the default is the safer SHRINK_LR
OBJECTIVES = ("params", "macs", "latency")
REMOVAL_FILE = "removal.pt"
SHRINK_FILE = "shrink.pt"


@dataclass(frozen=True)
class N2NOptions:
    """Settings of the N2N search (defaults: the authors' code, with the safer shrink learning rate)."""

    rollouts: int = 5  # [N2N code] rollouts per policy update, evaluated in parallel
    stage1_share: float = 0.5  # share of --budget spent on stage 1 (removal)
    # target: under a parameter limit (--target, --max-params) stage-1 rollouts are built at the widest uniform
    # width that meets it, so removal is judged at the size the student will have; full: at the teacher's width
    stage1_width: Literal["target", "full"] = "target"
    stage2_bases: int = 1  # stage 2 shrinks the best this many stage-1 architectures in turn ([paper]: 1)
    removal_lr: float = REMOVAL_LR  # [N2N code] 3e-3
    shrink_lr: float = SHRINK_LR  # [N2N code] used 0.1; see reinforce.py for why ours is lower
    baseline_decay: float = 0.9
    entropy_weight: float = 0.0
    reward: Literal["paper", "log"] = "paper"  # log: compression on a log scale, for targets past ~10x
    objective: Literal["params", "macs", "latency"] = "params"  # what the compression term C measures
    constraint: Literal["soft", "hard"] = "soft"  # soft: [N2N code] annealed penalty; hard: -1
    max_params: int | None = None
    max_macs: int | None = None
    min_accuracy: float | None = None
    policy: str | None = None  # a policies/ directory of an earlier run to start from (transfer)

    def validate(self) -> None:
        """Reject impossible settings."""
        if self.rollouts < 1:
            raise ArchcompressError(f"--rollouts must be at least 1, got {self.rollouts}")
        if not 0.0 < self.stage1_share < 1.0:
            raise ArchcompressError(f"--stage1-share must be between 0 and 1, got {self.stage1_share}")
        if self.reward not in ("paper", "log"):
            raise ArchcompressError(f"--reward must be paper or log, got {self.reward!r}")
        if self.objective not in OBJECTIVES:
            raise ArchcompressError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.stage2_bases < 1:
            raise ArchcompressError(f"--stage2-bases must be at least 1, got {self.stage2_bases}")
        if self.stage1_width not in ("target", "full"):
            raise ArchcompressError(f"--stage1-width must be target or full, got {self.stage1_width!r}")
        if self.constraint not in ("soft", "hard"):
            raise ArchcompressError(f"--constraint must be soft or hard, got {self.constraint!r}")
        for name, limit in (("max-params", self.max_params), ("max-macs", self.max_macs)):
            if limit is not None and limit < 1:
                raise ArchcompressError(f"--{name} must be a positive count, got {limit}")
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise ArchcompressError(f"--min-accuracy is a fraction between 0 and 1, got {self.min_accuracy}")


@dataclass(frozen=True)
class TeacherStats:
    """What the reward compares a student with."""

    accuracy: float  # on val
    params: int
    macs: int
    latency_ms: float | None = None  # CPU batch-1 latency; needed by ``objective="latency"``

    def size(self, objective: str) -> float:
        """The teacher's size under ``objective`` (params, MACs or milliseconds)."""
        if objective == "latency":
            if self.latency_ms is None:
                raise ArchcompressError("objective latency needs the teacher's measured latency")
            return self.latency_ms
        return float(self.params if objective == "params" else self.macs)


class N2NSearch:
    """The two-stage N2N search over a teacher's compression space (see the module docstring)."""

    name = "n2n"

    def __init__(
        self,
        space: CompressionSpace,
        options: N2NOptions,
        teacher: TeacherStats,
        budget: int,
        seed: int,
        target: float | None = None,
    ) -> None:
        options.validate()
        self.space = space
        self.options = options
        self.teacher = teacher
        self.target = target
        self.batch_size = options.rollouts
        self.stage1_evaluations = max(1, round(budget * options.stage1_share)) if budget > 1 else budget
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # policy initialisation
        features = torch.as_tensor(space.features())  # (units, F)
        self.features = features
        self.removable = torch.tensor([u.keep_index is not None for u in space.units], dtype=torch.bool)
        self.removal = RemovalPolicy(features.shape[1])
        self.shrink = ShrinkPolicy(features.shape[1], len(space.ratios))
        if options.policy:
            load_policies(Path(options.policy), self.removal, self.shrink, space)
        self.removal_trainer = Reinforce(
            self.removal, options.removal_lr, options.baseline_decay, options.entropy_weight
        )
        self.shrink_trainer = Reinforce(self.shrink, options.shrink_lr, options.baseline_decay, options.entropy_weight)
        # --target is a params ratio; latency has no analytic minimum, so the smallest student's MAC ratio
        # stands in for it
        analytic = "params" if options.objective == "params" else "macs"
        self.max_ratio = (target if analytic == "params" else None) or space.max_compression(analytic)
        teacher.size(options.objective)  # fails early when latency is asked for but was not measured
        self.iteration = 0
        self._seen: set[str] = set()  # distinct candidates observed: what the stage split counts
        self.history: list[dict[str, float]] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (log_prob, entropy) per proposal
        self._stage1_results: dict[str, tuple[float, Candidate]] = {}  # hash -> (reward, candidate), trained ones
        self._stage2_units: dict[str, list[int]] = {}  # per base hash
        self._shrink_rollouts = 0

    @property
    def evaluations(self) -> int:
        """Distinct candidates observed so far (a repeated rollout is free: it comes from the store)."""
        return len(self._seen)

    @property
    def stage(self) -> int:
        """1 while removing units, 2 while shrinking the kept ones."""
        return 1 if self.evaluations < self.stage1_evaluations else 2

    # --- proposing -----------------------------------------------------------------------------------

    def propose(self, count: int) -> list[Candidate]:
        self._pending = []
        return [self._sample_removal() if self.stage == 1 else self._sample_shrink() for _ in range(count)]

    def _sample_removal(self) -> Candidate:
        sample = self.removal.sample(self.features, self.removable, self.generator)
        self._pending.append((sample.log_prob, sample.entropy))
        keep = [True] * len(self.space.removable_units)
        for unit in self.space.units:
            if unit.keep_index is not None:
                keep[unit.keep_index] = bool(sample.actions[unit.index].item() == 1)
        limit = self._param_limit()
        if self.options.stage1_width == "target" and limit is not None:
            ratio = self.space.largest_uniform_ratio(tuple(keep), limit)
            return self.space.uniform_candidate(ratio or min(self.space.ratios), tuple(keep))
        full = self.space.teacher_candidate()
        return Candidate(keep=tuple(keep), ratios=full.ratios, kernel_ratios=full.kernel_ratios)

    def _stage2_bases(self) -> list[Candidate]:
        """The best ``stage2_bases`` stage-1 architectures (highest reward first; the teacher if none trained)."""
        ranked = sorted(self._stage1_results.values(), key=lambda item: -item[0])
        return [c for _, c in ranked[: self.options.stage2_bases]] or [self.space.teacher_candidate()]

    def _stage2_base(self) -> Candidate:
        return self._stage2_bases()[0]

    def _shrink_units(self, base: Candidate) -> list[int]:
        """Units that decide a ratio in stage 2: present in the base student, first of their channel group."""
        key = self.space.candidate_hash(base)
        if key not in self._stage2_units:
            present = self.space.candidate_features(base)[:, len(FEATURE_SCHEMA)] > 0
            seen: set[int] = set()
            units = []
            for unit in self.space.units:
                if present[unit.index] and unit.shrink_group is not None and unit.shrink_group not in seen:
                    seen.add(unit.shrink_group)
                    units.append(unit.index)
            self._stage2_units[key] = units
        return self._stage2_units[key]

    def _sample_shrink(self) -> Candidate:
        bases = self._stage2_bases()
        base = bases[self._shrink_rollouts % len(bases)]  # the bases take turns
        self._shrink_rollouts += 1
        units = self._shrink_units(base)
        sample = self.shrink.sample(self.features[units], self.generator)
        self._pending.append((sample.log_prob, sample.entropy))
        ratios = list(base.ratios)
        for position, unit in enumerate(units):
            group = self.space.units[unit].shrink_group
            assert group is not None
            ratios[group] = self.space.ratios[int(sample.actions[position])]
        return Candidate(keep=base.keep, ratios=tuple(ratios), kernel_ratios=base.kernel_ratios)

    # --- learning ------------------------------------------------------------------------------------

    def reward(self, result: Result) -> float:
        """``R = Rc * Ra`` with constraints; -1 for students that did not train (invalid, diverged, failed)."""
        student_size = _student_size(result, self.options.objective)
        if not result.ok or result.val_accuracy is None or not student_size:
            return INVALID_REWARD
        ratio = self.teacher.size(self.options.objective) / student_size
        c = log_compression(ratio, self.max_ratio) if self.options.reward == "log" else 1.0 - 1.0 / ratio
        reward = c * (2.0 - c) * (result.val_accuracy / self.teacher.accuracy)
        if self._violates(result):
            return annealed_penalty(reward, self.iteration) if self.options.constraint == "soft" else INVALID_REWARD
        return reward

    def _param_limit(self) -> int | None:
        """The most parameters a student may have (``--max-params`` and ``--target`` together), if limited."""
        limits = [self.options.max_params] if self.options.max_params else []
        if self.target is not None:
            limits.append(math.floor(self.teacher.params / self.target))
        return min(limits) if limits else None

    def _violates(self, result: Result) -> bool:
        options = self.options
        max_params = self._param_limit()
        return bool(
            (max_params is not None and (result.params or 0) > max_params)
            or (options.max_macs is not None and (result.macs or 0) > options.max_macs)
            or (options.min_accuracy is not None and (result.val_accuracy or 0.0) < options.min_accuracy)
        )

    def observe(self, results: list[Result]) -> None:
        if len(results) != len(self._pending):
            raise ValueError(f"observe() got {len(results)} results for {len(self._pending)} proposals")
        stage = self.stage
        rewards = [self.reward(r) for r in results]
        log_probs = [lp for lp, _ in self._pending]
        entropies = [en for _, en in self._pending]
        trainer = self.removal_trainer if stage == 1 else self.shrink_trainer
        stats = trainer.update(log_probs, rewards, entropies)
        if stage == 1:
            for reward, result in zip(rewards, results, strict=True):
                if result.ok:
                    self._stage1_results[result.candidate_hash] = (reward, result.candidate)
        self.history.append({"iteration": self.iteration, "stage": stage, "mean_reward": sum(rewards) / len(rewards),
                             "best_reward": max(rewards), **{k: float(v) for k, v in stats.items()}})  # fmt: skip
        self.iteration += 1
        self._seen.update(r.candidate_hash for r in results)
        self._pending = []

    # --- transfer ------------------------------------------------------------------------------------

    def save_policies(self, directory: Path) -> None:
        """Write both policies with their feature schema (``removal.pt``, ``shrink.pt``), atomically."""
        for policy, name in ((self.removal, REMOVAL_FILE), (self.shrink, SHRINK_FILE)):
            payload = {
                "format": "archcompress-policy",
                "kind": name.removesuffix(".pt"),
                "config": dict(policy.config),
                "state_dict": policy.state_dict(),
                "feature_schema": {"version": FEATURE_SCHEMA.version, "names": list(FEATURE_SCHEMA.names)},
                "ratios": list(self.space.ratios),
                "options": asdict(self.options),
            }
            with atomic_open(directory / name, "wb") as handle:
                torch.save(payload, handle)


def _student_size(result: Result, objective: str) -> float | None:
    if objective == "latency":
        return result.latency_ms
    return result.params if objective == "params" else result.macs


def load_policies(directory: Path, removal: nn.Module, shrink: nn.Module, space: CompressionSpace) -> None:
    """Load saved policies into ``removal`` and ``shrink``, refusing ones made for another feature schema."""
    for policy, name in ((removal, REMOVAL_FILE), (shrink, SHRINK_FILE)):
        path = directory / name
        if not path.is_file():
            raise ArchcompressError(
                f"--policy {directory}: {name} is missing (expected a policies/ directory of a run)"
            )
        try:
            payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ArchcompressError(f"--policy {path} is not a readable policy file ({exc})") from exc
        schema = payload.get("feature_schema", {}) if isinstance(payload, dict) else {}
        if schema.get("version") != FEATURE_SCHEMA.version or list(schema.get("names", [])) != list(
            FEATURE_SCHEMA.names
        ):
            raise ArchcompressError(
                f"--policy {path} was trained on unit features of schema version {schema.get('version')!r}, this "
                f"archcompress uses version {FEATURE_SCHEMA.version}: train the policy again with this version"
            )
        if name == SHRINK_FILE and len(payload.get("ratios", [])) != len(space.ratios):
            raise ArchcompressError(
                f"--policy {path} chooses among {len(payload.get('ratios', []))} ratios but this space has "
                f"{len(space.ratios)}: use the same ratio set as the run that trained it"
            )
        try:
            policy.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise ArchcompressError(f"--policy {path} does not fit this policy ({exc})") from exc
