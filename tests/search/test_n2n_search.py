"""The N2N search with a fake evaluator: stages, rewards, constraints, learning, saved policies."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from archcompress.constraints import Constraints
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.models import create_model
from archcompress.search.n2n.search import N2NOptions, N2NSearch, TeacherStats
from archcompress.search.reward import annealed_penalty, log_compression
from archcompress.space import Candidate, CompressionSpace


def fake_result(space: CompressionSpace, candidate: Candidate, accuracy: float | None = None) -> Result:
    """A result whose accuracy falls as the student shrinks (a closed-form stand-in for training)."""
    if space.check(candidate) is not None:
        return Result(candidate, space.candidate_hash(candidate), "invalid", None, None, None, None, 0, False)
    cost = space.cost(candidate)
    share = cost.params / space.teacher_cost.params
    acc = accuracy if accuracy is not None else 0.98 - 0.3 * (1 - share) ** 4
    return Result(candidate, space.candidate_hash(candidate), "ok", acc, cost.params, cost.macs, 1.0, 0, False)


LIMITS = {field.name for field in dataclasses.fields(Constraints)}


def _search(space: CompressionSpace, budget: int = 40, seed: int = 0, **options: object) -> N2NSearch:
    """An N2N search; ``options`` are N2N options or constraint limits (``max_params=...``)."""
    teacher = TeacherStats(0.98, space.teacher_cost.params, space.teacher_cost.macs)
    limits = {name: options.pop(name) for name in list(options) if name in LIMITS}
    constraints = Constraints(**limits)  # type: ignore[arg-type]
    return N2NSearch(space, N2NOptions(**options), teacher, budget, seed, constraints=constraints)  # type: ignore[arg-type]


def test_stage1_removes_only_and_stage2_shrinks_only_the_best_stage1_architecture(space: CompressionSpace) -> None:
    search = _search(space, budget=20, rollouts=5, stage1_width="full")
    assert search.stage1_evaluations == 10 and search.stage == 1
    for _ in range(2):
        proposals = search.propose(5)
        assert all(c.ratios == space.teacher_candidate().ratios for c in proposals)  # stage 1 never shrinks
        search.observe([fake_result(space, c) for c in proposals])
    assert search.stage == 2
    best_keep = search._stage2_base().keep
    proposals = search.propose(5)
    assert all(c.keep == best_keep for c in proposals)  # stage 2 never removes
    assert any(c.ratios != space.teacher_candidate().ratios for c in proposals)
    assert all(r in space.ratios for c in proposals for r in c.ratios)


def test_reward_matches_the_paper_and_invalid_is_minus_one(space: CompressionSpace) -> None:
    search = _search(space)
    candidate = space.uniform_candidate(0.5)
    result = fake_result(space, candidate, accuracy=0.49)
    c = 1 - result.params / space.teacher_cost.params  # type: ignore[operator]
    assert search.reward(result) == pytest.approx(c * (2 - c) * 0.5)
    invalid = Result(candidate, "h", "invalid", None, None, None, None, 0, False)
    diverged = Result(candidate, "h", "diverged", None, 10, 10, 1.0, 0, False)
    assert search.reward(invalid) == -1.0 and search.reward(diverged) == -1.0


def test_log_reward_keeps_rewarding_high_compression(space: CompressionSpace) -> None:
    assert log_compression(10.0, 100.0) == pytest.approx(0.5)
    assert log_compression(1000.0, 100.0) == 1.0 and log_compression(0.5, 100.0) == 0.0
    paper, logscale = _search(space), _search(space, reward="log")
    small = fake_result(space, space.uniform_candidate(min(space.ratios)), accuracy=0.98)
    medium = fake_result(space, space.uniform_candidate(0.5), accuracy=0.98)
    gap_paper = paper.reward(small) - paper.reward(medium)
    gap_log = logscale.reward(small) - logscale.reward(medium)
    assert gap_log > gap_paper > 0


def test_constraints_soft_anneals_and_hard_is_minus_one(space: CompressionSpace) -> None:
    assert annealed_penalty(0.8, 0) == pytest.approx(0.8)
    assert annealed_penalty(0.8, 15) == -1.0 and annealed_penalty(0.8, 40) == -1.0
    e = (1 - 5 / 15) ** 4
    assert annealed_penalty(0.8, 5) == pytest.approx((e - 1) + e * 0.8)
    big = fake_result(space, space.teacher_candidate(), accuracy=0.98)
    soft = _search(space, max_params=1000)
    hard = _search(space, max_params=1000, constraint="hard")
    assert hard.reward(big) == -1.0
    assert soft.reward(big) == pytest.approx(annealed_penalty(0.0, 0))
    soft.iteration = 20
    assert soft.reward(big) == -1.0
    low = _search(space, min_accuracy=0.99, constraint="hard")
    assert low.reward(fake_result(space, space.uniform_candidate(0.5), accuracy=0.9)) == -1.0


def test_policies_learn_from_a_closed_form_reward(space: CompressionSpace) -> None:
    search = _search(space, budget=400, seed=1)
    first, last = [], []
    for update in range(40):
        proposals = search.propose(5)
        search.observe([fake_result(space, c) for c in proposals])
        (first if update < 8 else last if update >= 32 else []).append(search.history[-1]["mean_reward"])
    assert sum(last) / len(last) > sum(first) / len(first) + 0.05


def test_saved_policies_load_and_a_foreign_schema_is_refused(space: CompressionSpace, tmp_path: Path) -> None:
    search = _search(space)
    search.observe([fake_result(space, c) for c in search.propose(5)])
    search.save_policies(tmp_path)
    reloaded = _search(space, policy=str(tmp_path))
    for name, param in search.removal.state_dict().items():
        assert torch.equal(param, reloaded.removal.state_dict()[name])
    payload = torch.load(tmp_path / "removal.pt", weights_only=True)
    payload["feature_schema"]["version"] = 999
    torch.save(payload, tmp_path / "removal.pt")
    with pytest.raises(ArchcompressError, match="schema version 999"):
        _search(space, policy=str(tmp_path))
    with pytest.raises(ArchcompressError, match="missing"):
        _search(space, policy=str(tmp_path / "nowhere"))


def test_policies_transfer_to_a_teacher_of_another_size_and_family(space: CompressionSpace, tmp_path: Path) -> None:
    small = _search(space)
    small.observe([fake_result(space, c) for c in small.propose(5)])
    small.save_policies(tmp_path)
    torch.manual_seed(0)
    resnet = CompressionSpace.from_model(create_model("resnet20", (1, 28, 28), 10).eval(), (1, 28, 28))
    larger = _search(resnet, policy=str(tmp_path))
    proposals = larger.propose(5)
    assert len(proposals) == 5 and all(len(c.keep) == len(resnet.removable_units) for c in proposals)
    assert torch.equal(larger.removal.state_dict()[next(iter(small.removal.state_dict()))],
                       small.removal.state_dict()[next(iter(small.removal.state_dict()))])  # fmt: skip


def test_under_a_target_stage1_builds_each_removal_at_the_widest_width_that_meets_it(space: CompressionSpace) -> None:
    teacher = TeacherStats(0.98, space.teacher_cost.params, space.teacher_cost.macs)
    limit = space.teacher_cost.params / 5
    search = N2NSearch(space, N2NOptions(), teacher, budget=20, seed=0, target=5.0)
    for candidate in search.propose(5):
        assert len(set(candidate.ratios)) == 1  # one uniform width per rollout
        assert space.cost(candidate).params <= limit
        if candidate.ratios[0] < 1.0:  # as wide as the limit allows
            wider = space.uniform_candidate(min(1.0, candidate.ratios[0] * 1.25), candidate.keep)
            assert space.cost(wider).params > limit
    full = N2NSearch(space, N2NOptions(stage1_width="full"), teacher, budget=20, seed=0, target=5.0)
    assert all(c.ratios == space.teacher_candidate().ratios for c in full.propose(5))


def test_stage2_can_shrink_several_stage1_architectures_in_turn(space: CompressionSpace) -> None:
    search = _search(space, budget=20, rollouts=5, stage2_bases=2)
    while search.stage == 1:
        proposals = search.propose(5)
        search.observe([fake_result(space, c) for c in proposals])
    bases = search._stage2_bases()
    assert len(bases) == 2 and bases[0].keep != bases[1].keep
    proposals = search.propose(4)
    assert [c.keep for c in proposals] == [bases[0].keep, bases[1].keep] * 2


def test_a_converged_stage1_hands_the_rest_of_its_share_to_stage2() -> None:
    torch.manual_seed(0)
    model = create_model("cnn1d", (1, 40), 10, {"width": 0.25}).eval()
    no_removal = CompressionSpace.from_model(model, (1, 40))  # strided convs and linears only: nothing removable
    search = _search(no_removal, budget=40, rollouts=5, stall_updates=3)
    assert search.stage1_evaluations == 20
    updates = 0
    while search.stage == 1:
        search.observe([fake_result(no_removal, c) for c in search.propose(5)])
        updates += 1
    assert updates == 4 and search.evaluations == 1  # one new candidate, then three updates of repeats
    proposals = search.propose(5)
    assert any(c.ratios != no_removal.teacher_candidate().ratios for c in proposals)


def _to_stage2(search: N2NSearch, space: CompressionSpace) -> None:
    while search.stage == 1:
        search.observe([fake_result(space, c) for c in search.propose(5)])


def _stall(search: N2NSearch, space: CompressionSpace, accuracy: float) -> None:
    """Updates that all answer one repeated result, until the search restarts stage 2 (or has nothing left)."""
    restarts = search.restarts
    repeated: Result | None = None
    while search.restarts == restarts:
        proposals = search.propose(5)
        if not proposals:
            return
        repeated = repeated or fake_result(space, proposals[0], accuracy=accuracy)
        search.observe([repeated] * len(proposals))


def test_a_converged_stage2_restarts_a_fresh_policy_on_the_next_best_stage1_architecture(
    space: CompressionSpace, tmp_path: Path
) -> None:
    search = _search(space, budget=40, rollouts=5, stall_updates=2)
    _to_stage2(search, space)
    ranked = [c for _, c in sorted(search._stage1_results.values(), key=lambda item: -item[0])]
    assert search._stage2_base() == ranked[0]
    _stall(search, space, accuracy=0.97)  # the first shrink policy's rollouts reach a high reward
    first_policy = {k: v.clone() for k, v in search.shrink_policy_to_keep().items()}
    assert search.restarts == 1 and search._stage2_base() == ranked[1]
    assert any(not torch.equal(v, search.shrink.state_dict()[k]) for k, v in first_policy.items())
    assert all(c.keep == ranked[1].keep for c in search.propose(5))
    _stall(search, space, accuracy=0.2)  # the second one does worse: the first is the one kept
    assert search.restarts == 2 and search.history[-1]["restarts"] == 1  # the update made before the restart
    search.save_policies(tmp_path)
    saved = torch.load(tmp_path / "shrink.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in first_policy.items())


def test_stage2_proposes_nothing_once_every_stage1_architecture_was_shrunk(space: CompressionSpace) -> None:
    search = _search(space, budget=30, rollouts=5, stall_updates=1)
    _to_stage2(search, space)
    architectures = len(search._stage1_results)
    for _ in range(architectures):
        _stall(search, space, accuracy=0.9)
    assert search.restarts == architectures and search.propose(5) == []
    with pytest.raises(ArchcompressError, match="stall-updates"):
        _search(space, stall_updates=-1)


def test_without_a_limit_stage1_builds_each_removal_at_the_median_ratio(space: CompressionSpace) -> None:
    median = sorted(space.ratios)[len(space.ratios) // 2]
    assert median == 0.5  # the N2N code's ratio set: 0.5 five times of eleven
    for width in ("target", "median"):
        search = _search(space, stage1_width=width)
        assert all(c == space.uniform_candidate(median, c.keep) for c in search.propose(5))


@pytest.fixture(scope="module")
def kernel_space() -> CompressionSpace:
    """The VGG-11 space with kernel ratios: each plain 3x3 conv may become 1x1 (ratio 0.34) or stay 3x3."""
    torch.manual_seed(0)
    model = create_model("vgg11", (1, 28, 28), 10, {"width": 0.25}).eval()
    return CompressionSpace.from_model(model, (1, 28, 28), kernel_ratios=(0.34, 1.0))


def test_stage2_shrinks_kernels_when_the_space_has_kernel_ratios(
    kernel_space: CompressionSpace, tmp_path: Path
) -> None:
    assert kernel_space.kernel_units
    search = _search(kernel_space, budget=10, rollouts=5, stage1_width="full")
    full = kernel_space.teacher_candidate().kernel_ratios
    proposals: list[Candidate] = []
    while len(proposals) < 40:
        batch = search.propose(5)
        proposals += batch
        search.observe([fake_result(kernel_space, c, accuracy=0.9) for c in batch])
    stage2 = [c for c in proposals if c.ratios != kernel_space.teacher_candidate().ratios]
    # kernels are chosen, not copied from the base, and such students are valid
    assert any(c.kernel_ratios != full and kernel_space.check(c) is None for c in stage2)
    # the kernel policy learns with the width policy: one Adam over both
    trained = {id(p) for group in search.shrink_trainer.optimizer.param_groups for p in group["params"]}
    assert search.kernel is not None and all(id(p) in trained for p in search.kernel.parameters())
    search.save_policies(tmp_path)
    assert (tmp_path / "kernel.pt").is_file()
    again = _search(kernel_space, budget=10, policy=str(tmp_path))
    assert again.kernel is not None
    for name, value in again.kernel.state_dict().items():
        assert torch.equal(value, search.kernel.state_dict()[name])


def test_a_space_without_kernel_ratios_has_no_kernel_policy(space: CompressionSpace, tmp_path: Path) -> None:
    search = _search(space)
    assert search.kernel is None
    search.save_policies(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["removal.pt", "shrink.pt"]


def test_a_later_higher_fidelity_result_reranks_the_stage1_architectures(space: CompressionSpace) -> None:
    search = _search(space, budget=20, rollouts=5, stage1_width="full")
    for _ in range(2):
        proposals = search.propose(5)
        search.observe([fake_result(space, c) for c in proposals])
    assert search.stage == 2
    ranked = [c for _, c in sorted(search._stage1_results.values(), key=lambda item: -item[0])]
    assert search._stage2_base() == ranked[0]
    # multi-fidelity promotes the best-ranked architecture, and after more training it turns out poor
    promoted = dataclasses.replace(fake_result(space, ranked[0], accuracy=0.05), rung=1, epochs=3)
    search.revise([promoted])
    assert search._stage2_base() == ranked[1]
    search.revise([dataclasses.replace(promoted, candidate_hash="not-a-stage-1-candidate")])  # ignored
    assert len(search._stage1_results) == len(ranked)


@pytest.mark.parametrize("fit", [True, False])
def test_stage2_proposals_are_fitted_to_the_parameter_limit_on_request(space: CompressionSpace, fit: bool) -> None:
    limit = space.teacher_cost.params // 20
    search = _search(space, budget=30, rollouts=5, stage1_width="full", max_params=limit, fit_to_limit=fit)
    while search.stage == 1:
        search.observe([fake_result(space, c) for c in search.propose(5)])
    proposals = [c for _ in range(4) for c in search.propose(5)]
    sizes = [space.cost(c).params for c in proposals]
    if fit:
        assert all(size <= limit for size in sizes)
        # fitting is idempotent: a proposal that fits is left as it is
        assert all(search._fit_to_limit(c, search._shrink_units(search._stage2_base())) == c for c in proposals)
    else:
        assert any(size > limit for size in sizes)


def test_an_invalid_proposal_is_left_to_be_evaluated_as_invalid(space: CompressionSpace) -> None:
    search = _search(space, max_params=space.teacher_cost.params // 20)
    teacher = space.teacher_candidate()
    pools = {unit.keep_index for unit in space.units if unit.kind == "pool"}
    keep = tuple(index not in pools for index in range(len(teacher.keep)))
    invalid = dataclasses.replace(teacher, keep=keep)  # without its pools the classifier outgrows the teacher
    assert "more parameters" in (space.check(invalid) or "")  # (space.cost would raise on it)
    assert search._fit_to_limit(invalid, search._shrink_units(teacher)) == invalid
