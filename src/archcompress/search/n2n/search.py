"""N2N learning as a search: stage 1 removes units with a bidirectional-LSTM policy, stage 2 shrinks the
remaining channel groups with an autoregressive-LSTM policy; both learn by REINFORCE from the reward.

A policy that has converged proposes only candidates it has already seen, which the budget does not count.
So a stage ends early once its policy has proposed nothing new for ``stall_updates`` updates: stage 1 then
hands the rest of its share to stage 2, and a converged stage 2 restarts with a fresh shrink policy on the
next-best stage-1 architectures (``restarts`` in the history), until the budget is spent or no stage-1
architecture is left to shrink.

Resuming needs no search checkpoint: with the same seed the policies propose the same rollouts, every
finished evaluation comes back from the result store with the same reward, and the updates replay exactly.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from archcompress.constraints import Constraints
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.runtime import atomic_open
from archcompress.search.choice import candidate_checks
from archcompress.search.n2n.features import FEATURE_KINDS, policy_features
from archcompress.search.n2n.policies import RemovalPolicy, ShrinkPolicy, expected_kept, shift_to_keep
from archcompress.search.n2n.reinforce import REMOVAL_LR, SHRINK_LR, Reinforce
from archcompress.search.reward import (
    INVALID_REWARD,
    TeacherStats,
    annealed_penalty,
    log_compression,
    student_size,
)
from archcompress.space import FEATURE_SCHEMA, Candidate, CompressionSpace

log = logging.getLogger("archcompress")

PAPER_SHRINK_LR = 0.1  # [N2N code]; the paper preset uses it, the default is the safer SHRINK_LR
OBJECTIVES = ("params", "macs", "latency")
STAGE1_WIDTHS = ("target", "full", "median")
TRANSFER_RESETS = ("none", "shrink-head")
TRANSFER_KEEPS = ("share", "count")
REMOVAL_FILE = "removal.pt"
SHRINK_FILE = "shrink.pt"
KERNEL_FILE = "kernel.pt"  # only when the space has kernel ratios


@dataclass(frozen=True)
class N2NOptions:
    """Settings of the N2N search (defaults: the authors' code, with the safer shrink learning rate)."""

    rollouts: int = 5  # [N2N code] rollouts per policy update, evaluated in parallel
    stage1_share: float = 0.5  # share of --budget spent on stage 1 (removal)
    # target: under a parameter limit (--target, --max-params) stage-1 rollouts are built at the widest uniform
    # width that meets it, so removal is judged at the size the student will have, and without one at the median;
    # median: at the median of the ratio set, the width a fresh shrink policy picks on average; full: at the
    # teacher's width ([paper])
    stage1_width: Literal["target", "full", "median"] = "target"
    stage2_bases: int = 1  # stage 2 shrinks the best this many stage-1 architectures in turn ([paper]: 1)
    # a stage has converged after this many updates in a row that proposed no new candidate (0: never); see above
    stall_updates: int = 3
    removal_lr: float = REMOVAL_LR  # [N2N code] 3e-3
    shrink_lr: float = SHRINK_LR  # [N2N code] used 0.1; see reinforce.py for why ours is lower
    baseline_decay: float = 0.9
    entropy_weight: float = 0.0
    reward: Literal["paper", "log"] = "paper"  # log: compression on a log scale, for targets past ~10x
    objective: Literal["params", "macs", "latency"] = "params"  # what the compression term C measures
    constraint: Literal["soft", "hard"] = "soft"  # soft: [N2N code] annealed penalty; hard: -1
    policy: str | None = None  # a policies/ directory of an earlier run to start from (transfer)
    # with --policy: the loaded policies sample at this softmax temperature, lowered linearly to 1 over their
    # first transfer_anneal updates, so they explore the new teacher before they settle on the old one's choices
    transfer_temperature: float = 1.0
    transfer_anneal: int = 10
    # with --policy: share keeps each unit with the probability the policy learnt, so a teacher twice as deep
    # keeps twice as many units; count shifts the keep logit so it keeps as many as on the teacher it learnt on
    transfer_keep: Literal["share", "count"] = "share"
    # with --policy: shrink-head re-initialises the output layers of the stage-2 policies (their width choices)
    transfer_reset: Literal["none", "shrink-head"] = "none"
    # the unit features the policies read: absolute, or relative to the teacher's largest (see features.py)
    features: Literal["absolute", "relative"] = "absolute"
    # stage 2 under a parameter limit (--target, --max-params): a proposal over it has its widest channel groups
    # stepped down the ratio set until it fits, so every evaluation is a student that may be chosen
    fit_to_limit: bool = True

    # what a run written before an option existed did: its config.yaml lacks the option and resumes this way
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"fit_to_limit": False}

    def validate(self) -> None:
        """Reject impossible settings."""
        if self.rollouts < 1:
            raise ArchcompressError(f"--rollouts must be at least 1, got {self.rollouts}")
        if not 0.0 < self.stage1_share < 1.0:
            raise ArchcompressError(f"--stage1-share must be between 0 and 1, got {self.stage1_share}")
        if self.reward not in ("paper", "log"):
            raise ArchcompressError(f"--reward must be paper or log, got {self.reward!r}")
        if self.stall_updates < 0:
            raise ArchcompressError(f"--stall-updates must be 0 or more, got {self.stall_updates}")
        if self.stage2_bases < 1:
            raise ArchcompressError(f"--stage2-bases must be at least 1, got {self.stage2_bases}")
        if self.constraint not in ("soft", "hard"):
            raise ArchcompressError(f"--constraint must be soft or hard, got {self.constraint!r}")
        if self.transfer_temperature <= 0.0:
            raise ArchcompressError(f"--transfer-temperature must be above 0, got {self.transfer_temperature}")
        if self.transfer_anneal < 0:
            raise ArchcompressError(f"--transfer-anneal must be 0 or more, got {self.transfer_anneal}")
        choices: dict[str, tuple[str, tuple[str, ...]]] = {
            "--objective": (self.objective, OBJECTIVES),
            "--stage1-width": (self.stage1_width, STAGE1_WIDTHS),
            "--transfer-reset": (self.transfer_reset, TRANSFER_RESETS),
            "--transfer-keep": (self.transfer_keep, TRANSFER_KEEPS),
            "--policy-features": (self.features, FEATURE_KINDS),
        }
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise ArchcompressError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


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
        constraints: Constraints | None = None,
    ) -> None:
        """``constraints``: the student's limits (``target`` alone is a shorthand for ``Constraints(target=...)``)."""
        options.validate()
        self.space = space
        self.options = options
        self.teacher = teacher
        self.constraints = constraints if constraints is not None else Constraints(target=target)
        target = self.constraints.target
        self.batch_size = options.rollouts
        self.stage1_evaluations = max(1, round(budget * options.stage1_share)) if budget > 1 else budget
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # policy initialisation
        features = torch.as_tensor(policy_features(space, options.features))  # (units, F)
        self.features = features
        self.removable = torch.tensor([u.keep_index is not None for u in space.units], dtype=torch.bool)
        self.seed = seed
        self.removal = RemovalPolicy(features.shape[1])
        self.shrink = ShrinkPolicy(features.shape[1], len(space.ratios))
        # kernel sizes, when the space has kernel ratios: a second autoregressive policy over the kernel units
        self.kernel = ShrinkPolicy(features.shape[1], len(space.kernel_ratios)) if space.kernel_units else None
        if options.policy:
            saved = self._transfer(self.removal)
            if options.transfer_keep == "count":
                self._keep_as_many_as_trained(saved)
            note = unseen_kinds_note(Path(options.policy), saved, space)
            if note:
                log.warning("%s", note, extra={"console": True})
        self.removal_trainer = Reinforce(
            self.removal, options.removal_lr, options.baseline_decay, options.entropy_weight
        )
        self.shrink_trainer = self._shrink_trainer()
        self._soften()
        self._stage = 1
        self._stalled = 0  # updates in a row that proposed no new candidate
        self._base_offset = 0  # stage 2 shrinks the stage-1 architectures ranked from here on
        self.restarts = 0
        self._life_best = INVALID_REWARD  # best reward the current shrink policy's rollouts reached
        self._kept_shrink: tuple[float, dict[str, torch.Tensor]] | None = None  # best converged policy so far
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
        return self._stage

    # --- proposing -----------------------------------------------------------------------------------

    def propose(self, count: int) -> list[Candidate]:
        self._pending = []
        if self.stage == 2 and not self._stage2_bases():
            return []  # every stage-1 architecture has been shrunk until its policy converged
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
        if self.options.stage1_width in ("median", "target"):
            return self.space.uniform_candidate(sorted(self.space.ratios)[len(self.space.ratios) // 2], tuple(keep))
        full = self.space.teacher_candidate()
        return Candidate(keep=tuple(keep), ratios=full.ratios, kernel_ratios=full.kernel_ratios)

    def _stage2_bases(self) -> list[Candidate]:
        """The stage-1 architectures stage 2 shrinks now: ``stage2_bases`` of them, the best first, skipping those
        shrunk before a restart (the teacher's architecture if stage 1 trained none)."""
        ranked = [c for _, c in sorted(self._stage1_results.values(), key=lambda item: -item[0])]
        ranked = ranked or [self.space.teacher_candidate()]
        return ranked[self._base_offset : self._base_offset + self.options.stage2_bases]

    def _stage2_base(self) -> Candidate:
        bases = self._stage2_bases()
        if not bases:
            raise ValueError("stage 2 has shrunk every stage-1 architecture")
        return bases[0]

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
        kernel_ratios = list(base.kernel_ratios)
        entries = self._kernel_entries(base)
        if self.kernel is not None and entries:
            kernel_units = [self.space.kernel_units[entry] for entry in entries]
            kernels = self.kernel.sample(self.features[kernel_units], self.generator)
            for position, entry in enumerate(entries):
                kernel_ratios[entry] = self.space.kernel_ratios[int(kernels.actions[position])]
            log_prob, entropy = self._pending.pop()  # one rollout: widths and kernels together
            self._pending.append((log_prob + kernels.log_prob, entropy + kernels.entropy))
        return self._fit_to_limit(Candidate(base.keep, tuple(ratios), tuple(kernel_ratios)), units)

    def _fit_to_limit(self, candidate: Candidate, units: list[int]) -> Candidate:
        """With ``fit_to_limit``: ``candidate`` with its widest groups (of ``units``) stepped down the ratio set,
        one step at a time, until it meets the parameter limit or every group is at the smallest ratio."""
        limit = self._param_limit()
        if not self.options.fit_to_limit or limit is None or self.space.check(candidate) is not None:
            return candidate  # an invalid proposal is evaluated as such (it earns the policy -1)
        levels = sorted(self.space.ratios)
        groups = [group for group in (self.space.units[unit].shrink_group for unit in units) if group is not None]
        ratios = list(candidate.ratios)
        while self.space.cost(replace(candidate, ratios=tuple(ratios))).params > limit:
            steppable = [group for group in groups if ratios[group] > levels[0]]
            if not steppable:
                break
            widest = max(steppable, key=lambda group: ratios[group])  # ties: the first such group
            ratios[widest] = max(level for level in levels if level < ratios[widest])
        return replace(candidate, ratios=tuple(ratios))

    def _kernel_entries(self, base: Candidate) -> list[int]:
        """Positions in ``Candidate.kernel_ratios`` whose unit is present in the base student."""
        present = self.space.candidate_features(base)[:, len(FEATURE_SCHEMA)] > 0
        return [entry for entry, unit in enumerate(self.space.kernel_units) if present[unit]]

    def _shrink_trainer(self) -> Reinforce:
        """REINFORCE over the stage-2 policies (widths, and kernels when the space has them)."""
        options = self.options
        policies = nn.ModuleList([self.shrink] + ([self.kernel] if self.kernel is not None else []))
        return Reinforce(policies, options.shrink_lr, options.baseline_decay, options.entropy_weight)

    # --- learning ------------------------------------------------------------------------------------

    def reward(self, result: Result) -> float:
        """``R = Rc * Ra`` with constraints; -1 for students that did not train (invalid, diverged, failed)."""
        size = student_size(result, self.options.objective)
        if not result.ok or result.val_accuracy is None or not size:
            return INVALID_REWARD
        ratio = self.teacher.size(self.options.objective) / size
        c = log_compression(ratio, self.max_ratio) if self.options.reward == "log" else 1.0 - 1.0 / ratio
        reward = c * (2.0 - c) * (result.val_accuracy / self.teacher.accuracy)
        if self._violates(result):
            return annealed_penalty(reward, self.iteration) if self.options.constraint == "soft" else INVALID_REWARD
        return reward

    def _param_limit(self) -> int | None:
        """The most parameters a student may have (``--max-params`` and ``--target`` together), if limited."""
        return self.constraints.param_limit(self.teacher.params)

    def _violates(self, result: Result) -> bool:
        return any(not check.met for check in candidate_checks(result, self.constraints, self.teacher.params))

    def observe(self, results: list[Result]) -> None:
        if len(results) != len(self._pending):
            raise ValueError(f"observe() got {len(results)} results for {len(self._pending)} proposals")
        stage = self.stage
        rewards = [self.reward(r) for r in results]
        log_probs = [lp for lp, _ in self._pending]
        entropies = [en for _, en in self._pending]
        trainer = self.removal_trainer if stage == 1 else self.shrink_trainer
        stats = trainer.update(log_probs, rewards, entropies)
        self._soften()
        if stage == 1:
            for reward, result in zip(rewards, results, strict=True):
                if result.ok:
                    self._stage1_results[result.candidate_hash] = (reward, result.candidate)
        else:
            self._life_best = max(self._life_best, *rewards)
        self.history.append({"iteration": self.iteration, "stage": stage, "mean_reward": sum(rewards) / len(rewards),
                             "best_reward": max(rewards), "restarts": self.restarts,
                             **{k: float(v) for k, v in stats.items()}})  # fmt: skip
        self.iteration += 1
        new = {r.candidate_hash for r in results} - self._seen
        self._seen.update(new)
        self._pending = []
        self._stalled = 0 if new else self._stalled + 1
        converged = self.options.stall_updates > 0 and self._stalled >= self.options.stall_updates
        if stage == 1 and (converged or self.evaluations >= self.stage1_evaluations):
            self._stage, self._stalled = 2, 0
        elif stage == 2 and converged:
            self._restart_shrink()

    def revise(self, results: list[Result]) -> None:
        """Later, higher-fidelity results of earlier candidates: stage 2 ranks the stage-1 architectures by them
        (the policies are not updated again)."""
        for result in results:
            if result.candidate_hash in self._stage1_results and result.ok:
                self._stage1_results[result.candidate_hash] = (self.reward(result), result.candidate)

    def _restart_shrink(self) -> None:
        """Stage 2 has converged: a fresh shrink policy (the transferred one, with ``--policy``) on the next bases."""
        if self._kept_shrink is None or self._life_best > self._kept_shrink[0]:
            self._kept_shrink = (self._life_best, copy.deepcopy(self.shrink.state_dict()))
        self._life_best = INVALID_REWARD
        self.restarts += 1
        self._base_offset += self.options.stage2_bases
        self._stalled = 0
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + 7919 * self.restarts)  # deterministic, so a resumed run replays it
            self.shrink = ShrinkPolicy(self.features.shape[1], len(self.space.ratios))
            if self.kernel is not None:
                self.kernel = ShrinkPolicy(self.features.shape[1], len(self.space.kernel_ratios))
            if self.options.policy:
                self._transfer(RemovalPolicy(self.features.shape[1]))
        self.shrink_trainer = self._shrink_trainer()
        self._soften()

    # --- transfer ------------------------------------------------------------------------------------

    def _transfer(self, removal: RemovalPolicy) -> dict[str, Any]:
        """Load ``--policy`` into ``removal`` and the stage-2 policies, then reset what ``transfer_reset`` names;
        the saved removal policy's payload."""
        options = self.options
        saved = load_policies(
            Path(str(options.policy)), removal, self.shrink, self.space, self.kernel, options.features
        )
        if options.transfer_reset == "shrink-head":
            for policy in (self.shrink, self.kernel):
                if policy is not None:
                    policy.head.reset_parameters()  # the global generator: seeded by the caller
        return saved

    def _keep_as_many_as_trained(self, saved: dict[str, Any]) -> None:
        """Shift the loaded removal policy so that it keeps as many units here as on its own teacher (``saved``:
        the saved removal policy's payload)."""
        count = saved.get("expected_kept")
        if count is None:
            raise ArchcompressError(
                f"--policy {self.options.policy} does not record how many units its removal policy keeps (saved by an "
                "earlier archcompress): train it again, or leave --transfer-keep at share"
            )
        shift_to_keep(self.removal, self.features, self.removable, float(count))

    def _soften(self) -> None:
        """With ``--policy``: each policy's temperature for the updates its trainer has made (see N2NOptions)."""
        options = self.options
        if not options.policy:
            return
        stages = ((self.removal_trainer, (self.removal,)), (self.shrink_trainer, (self.shrink, self.kernel)))
        for trainer, policies in stages:
            left = max(0.0, 1.0 - trainer.updates / options.transfer_anneal) if options.transfer_anneal else 0.0
            for policy in policies:
                if policy is not None:
                    policy.temperature = 1.0 + (options.transfer_temperature - 1.0) * left

    def shrink_policy_to_keep(self) -> dict[str, torch.Tensor]:
        """The shrink policy's weights worth reusing: of those stage 2 ran, the one whose rollouts scored best."""
        if self._kept_shrink is not None and self._kept_shrink[0] >= self._life_best:
            return self._kept_shrink[1]
        return self.shrink.state_dict()

    def save_policies(self, directory: Path) -> None:
        """Write both policies with their feature schema (``removal.pt``, ``shrink.pt``), atomically.

        After restarts, ``shrink.pt`` holds the shrink policy whose rollouts reached the best reward.
        """
        states = {REMOVAL_FILE: self.removal.state_dict(), SHRINK_FILE: self.shrink_policy_to_keep()}
        policies: list[tuple[RemovalPolicy | ShrinkPolicy, str]] = [
            (self.removal, REMOVAL_FILE),
            (self.shrink, SHRINK_FILE),
        ]
        if self.kernel is not None:
            states[KERNEL_FILE] = self.kernel.state_dict()
            policies.append((self.kernel, KERNEL_FILE))
        kept = expected_kept(self.removal, self.features, self.removable)
        for policy, name in policies:
            payload = {
                "format": "archcompress-policy",
                "kind": name.removesuffix(".pt"),
                "config": dict(policy.config),
                "state_dict": states[name],
                "feature_schema": {"version": FEATURE_SCHEMA.version, "names": list(FEATURE_SCHEMA.names)},
                "features": self.options.features,
                "unit_kinds": sorted({unit.kind for unit in self.space.units}),
                **({"expected_kept": kept} if name == REMOVAL_FILE else {}),
                "ratios": list(self.space.kernel_ratios if name == KERNEL_FILE else self.space.ratios),
                "options": asdict(self.options),
            }
            with atomic_open(directory / name, "wb") as handle:
                torch.save(payload, handle)


def load_policies(
    directory: Path,
    removal: nn.Module,
    shrink: nn.Module,
    space: CompressionSpace,
    kernel: nn.Module | None = None,
    features: str = "absolute",
) -> dict[str, Any]:
    """Load saved policies into ``removal`` and ``shrink`` (and ``kernel``, when the directory has one),
    refusing ones made for another feature schema or another kind of unit features than ``features``; the saved
    removal policy's payload (its weights and what was recorded with them)."""
    loaded: dict[str, dict[str, Any]] = {}
    policies: list[tuple[nn.Module, str]] = [(removal, REMOVAL_FILE), (shrink, SHRINK_FILE)]
    if kernel is not None and (directory / KERNEL_FILE).is_file():
        policies.append((kernel, KERNEL_FILE))
    for policy, name in policies:
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
        trained_on = payload.get("features", "absolute")  # policies saved before relative features were absolute
        if trained_on != features:
            raise ArchcompressError(
                f"--policy {path} was trained on {trained_on} unit features but this run reads {features} ones: "
                f"pass --policy-features {trained_on}"
            )
        choices = space.kernel_ratios if name == KERNEL_FILE else space.ratios
        if name != REMOVAL_FILE and len(payload.get("ratios", [])) != len(choices):
            raise ArchcompressError(
                f"--policy {path} chooses among {len(payload.get('ratios', []))} ratios but this space has "
                f"{len(choices)}: use the same ratio set as the run that trained it"
            )
        try:
            policy.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise ArchcompressError(f"--policy {path} does not fit this policy ({exc})") from exc
        loaded[name] = payload
    return loaded[REMOVAL_FILE]


def unseen_kinds_note(directory: Path, saved: dict[str, Any], space: CompressionSpace) -> str | None:
    """A warning when ``space`` has kinds of unit the removal policy saved in ``directory`` (``saved``: its
    payload, as ``load_policies`` returns it) never saw (e.g. residual blocks for a policy trained on a VGG); None
    when it saw them all or the file does not record them."""
    seen = saved.get("unit_kinds")
    if not seen:
        return None
    unseen = sorted({unit.kind for unit in space.units} - set(seen))
    if not unseen:
        return None
    return (
        f"--policy {directory} was trained on a teacher without {', '.join(unseen)} units: its decisions on "
        f"them start untrained (a policy transfers best within one family, e.g. VGG-11 to VGG-19)"
    )
