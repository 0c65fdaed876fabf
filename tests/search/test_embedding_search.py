"""The embedding search with a fake evaluator: budget split, unseen valid proposals, improvement over the seed
phase, targets, history, determinism, and saved codecs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from archcompress.errors import ArchcompressError
from archcompress.evaluate import Result
from archcompress.models import create_model
from archcompress.runtime import torch_threads
from archcompress.search import RandomSearch
from archcompress.search.embedding.search import CODEC_FILE, EmbeddingOptions, EmbeddingSearch, load_codec
from archcompress.search.n2n.search import TeacherStats
from archcompress.search.reward import log_compression, n2n_reward
from archcompress.space import Candidate, CompressionSpace

# small settings: a round trains in well under a second on one thread
FAST = EmbeddingOptions(seed_candidates=16, unlabelled=128, epochs=40, warm_epochs=20)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: the codec model is tiny, and this machine's two cores are shared."""
    with torch_threads(1):
        yield


class FakeEvaluator:
    """Closed-form accuracy: each shrink group and each removed unit costs a fixed, unit-specific amount.

    Compression is cheap in some places and expensive in others, so the best trade-off is a specific
    combination that a search has to find (random guessing rarely does).
    """

    def __init__(self, space: CompressionSpace, seed: int = 123) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.group_cost = rng.uniform(0.0, 0.08, len(space.shrink_groups))
        self.removal_cost = rng.uniform(0.0, 0.03, len(space.removable_units))
        self.calls = 0

    def accuracy(self, candidate: Candidate) -> float:
        canonical = self.space.canonical(candidate)
        shrink = (self.group_cost * (1 - np.array(canonical.ratios)) ** 2).sum()
        removal = (self.removal_cost * ~np.array(canonical.keep)).sum()
        return float(0.98 - shrink - removal)

    def __call__(self, candidate: Candidate) -> Result:
        self.calls += 1
        digest = self.space.candidate_hash(candidate)
        if self.space.check(candidate) is not None:
            return Result(candidate, digest, "invalid", None, None, None, None, 0, False)
        cost = self.space.cost(candidate)
        return Result(candidate, digest, "ok", self.accuracy(candidate), cost.params, cost.macs, 1.0, 0, False)


def _teacher(space: CompressionSpace) -> TeacherStats:
    return TeacherStats(0.98, space.teacher_cost.params, space.teacher_cost.macs)


def _run(search: EmbeddingSearch, evaluate: FakeEvaluator, budget: int) -> tuple[list[Candidate], list[Result]]:
    """The compress loop: propose a batch, evaluate it, observe, until the budget is spent."""
    proposals: list[Candidate] = []
    results: list[Result] = []
    while len(results) < budget:
        batch = search.propose(min(search.batch_size, budget - len(results)))
        assert batch, "a search must always propose something"
        batch_results = [evaluate(c) for c in batch]
        search.observe(batch_results)
        proposals += batch
        results += batch_results
    return proposals, results


def _objective(result: Result, teacher_params: int, size_weight: float = 0.01) -> float:
    assert result.val_accuracy is not None and result.params
    return result.val_accuracy - size_weight * math.log(result.params / teacher_params)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposals_are_unseen_valid_and_beat_the_seed_phase(space: CompressionSpace, seed: int) -> None:
    evaluate, budget = FakeEvaluator(space), 40
    search = EmbeddingSearch(space, FAST, _teacher(space), budget, seed)
    assert search.seed_evaluations == 16
    proposals, results = _run(search, evaluate, budget)
    hashes = [space.candidate_hash(c) for c in proposals]
    assert len(set(hashes)) == budget  # never the same student twice
    assert space.candidate_hash(space.teacher_candidate()) not in hashes  # the teacher is known already
    assert all(space.check(c) is None for c in proposals)
    teacher_params = space.teacher_cost.params
    seed_best = max(_objective(r, teacher_params) for r in results[:16])
    best = max(_objective(r, teacher_params) for r in results)
    assert best > seed_best + 0.002
    # and better than random search with the whole budget
    random_results = [evaluate(c) for c in RandomSearch(space, seed).propose(budget)]
    assert best > max(_objective(r, teacher_params) for r in random_results if r.ok)
    # the ascent, not the fallback, made most round proposals
    rounds = [h for h in search.history if h["round"] > 0]
    assert np.mean([h["ascent_share"] for h in rounds]) >= 0.5


def test_ascent_paths_climb_the_objective(space: CompressionSpace) -> None:
    """Rewarding size, paths from the teacher shrink it; rewarding only accuracy, paths from small students grow."""
    evaluate, teacher_params = FakeEvaluator(space), space.teacher_cost.params
    search = EmbeddingSearch(space, replace(FAST, size_weight=0.2), _teacher(space), 40, seed=0)
    while search.phase == "seed":
        search.observe([evaluate(c) for c in search.propose(8)])
    search._fit()
    smallest = min((s.candidate for s in search._ranked()), key=lambda c: space.cost(c).params)
    (teacher_path,) = search.ascent_paths([space.teacher_candidate()])
    params = [space.cost(c).params for c in teacher_path]
    assert params[-1] < teacher_params / 2 and params[-1] <= params[len(params) // 2] <= params[0]
    accuracy_only = EmbeddingSearch(space, replace(FAST, size_weight=0.0), _teacher(space), 40, seed=0)
    accuracy_only.model, accuracy_only._typical_norm = search.model, search._typical_norm
    (grown,) = accuracy_only.ascent_paths([smallest])
    assert space.cost(grown[-1]).params > 1.2 * space.cost(smallest).params
    assert evaluate.accuracy(grown[-1]) > evaluate.accuracy(smallest)


def test_seed_phase_covers_compression_levels_and_prior_results_count(space: CompressionSpace) -> None:
    evaluate = FakeEvaluator(space)
    teacher = _teacher(space)
    search = EmbeddingSearch(space, FAST, teacher, 40, seed=0)
    seeds = search.propose(16)
    assert len(seeds) == 16 and search.phase == "seed"
    bins = {search._bin(c) for c in seeds}
    assert len(bins) >= 6  # of 8 log-compression bins between 1x and the space's largest compression
    # 10 earlier evaluations (e.g. N2N rollouts from the store): 6 seeds still to go, none of them a prior one
    rng = np.random.default_rng(5)
    prior = [evaluate(space.sample(rng, keep_prob=0.7)) for _ in range(10)]
    prior_hashes = {r.candidate_hash for r in prior}
    assert len(prior_hashes) == 10
    with_prior = EmbeddingSearch(space, FAST, teacher, 40, seed=0, prior=prior)
    assert with_prior.seed_evaluations == 6
    proposals, _ = _run(with_prior, evaluate, 40)
    assert not prior_hashes & {space.candidate_hash(c) for c in proposals}
    # the seed phase never takes more than max_seed_share of the budget
    capped = EmbeddingSearch(space, replace(FAST, seed_candidates=100, max_seed_share=0.25), teacher, 40, seed=0)
    assert capped.seed_evaluations == 10
    # enough prior data: straight to the rounds
    assert EmbeddingSearch(space, replace(FAST, seed_candidates=8), teacher, 40, 0, prior=prior).seed_evaluations == 0


def test_history_records_losses_and_predicted_vs_achieved(space: CompressionSpace) -> None:
    search = EmbeddingSearch(space, replace(FAST, batch_size=6), _teacher(space), 28, seed=0)
    _run(search, FakeEvaluator(space), 28)
    assert search.seed_evaluations == 14  # half the budget at most
    assert [h["round"] for h in search.history] == [0, 0, 0, 1, 2, 3]  # seeds in batches of 6, 6, 2; then rounds
    rounds = search.history[3:]
    for entry in rounds:
        for key in ("recon", "acc_mse", "params_mse", "token_accuracy", "pred_acc_mae", "pred_log_params_mae",
                    "pred_objective", "achieved_objective", "best_objective", "fit_seconds"):  # fmt: skip
            assert math.isfinite(entry[key]), key
        assert entry["token_accuracy"] > 0.9 and entry["pred_acc_mae"] < 0.1
    assert rounds[1]["samples"] == rounds[0]["samples"] + 6  # the second round trained on the first one's results
    bests = [h["best_objective"] for h in search.history]
    assert bests == sorted(bests)


def test_a_seed_reproduces_the_run(space: CompressionSpace) -> None:
    options = replace(FAST, batch_size=4)
    runs = [_run(EmbeddingSearch(space, options, _teacher(space), 24, seed=7), FakeEvaluator(space), 24)[0]]
    runs.append(_run(EmbeddingSearch(space, options, _teacher(space), 24, seed=7), FakeEvaluator(space), 24)[0])
    other = _run(EmbeddingSearch(space, options, _teacher(space), 24, seed=8), FakeEvaluator(space), 24)[0]
    assert runs[0] == runs[1]
    assert runs[0] != other


def test_a_target_steers_round_proposals_within_the_parameter_limit(space: CompressionSpace) -> None:
    target, teacher_params = 8.0, space.teacher_cost.params
    search = EmbeddingSearch(space, FAST, _teacher(space), 40, seed=1, target=target)
    proposals, _ = _run(search, FakeEvaluator(space), 40)
    within = [teacher_params / space.cost(c).params >= target for c in proposals]
    assert np.mean(within[16:]) == 1.0 > np.mean(within[:16])
    # the objective penalises predicted params over the limit and stops rewarding compression past it
    limit = -math.log(target)
    over, at, under = (float(search.objective(torch.tensor(0.9), torch.tensor(limit + d))) for d in (1.0, 0.0, -1.0))
    assert at - over == pytest.approx(FAST.target_weight + FAST.size_weight, rel=1e-5)
    assert under == pytest.approx(at)


def test_with_a_target_half_the_seeds_are_random_removals_at_the_targets_uniform_width(
    space: CompressionSpace,
) -> None:
    target, teacher = 8.0, _teacher(space)
    limit = teacher.params / target
    search = EmbeddingSearch(space, FAST, teacher, 40, seed=3, target=target)
    first = search.propose(8)
    search.observe([FakeEvaluator(space)(c) for c in first])
    seeds = first + search.propose(8)
    assert search.phase == "seed"
    fitted = [seeds[i] for i in range(1, 16, 2)]  # every second seed
    for candidate in fitted:
        assert len(set(candidate.ratios)) == 1 and space.cost(candidate).params <= limit
        wider = space.uniform_candidate(min(1.0, candidate.ratios[0] * 1.25), candidate.keep)
        assert space.cost(wider).params > limit  # the widest uniform width that meets the target
    assert len({c.keep for c in fitted}) == len(fitted)  # each with its own removals
    others = [seeds[i] for i in range(0, 16, 2)]
    assert sum(len(set(c.ratios)) > 1 for c in others) >= 4  # the stratified draws mix widths
    # without a target, or with the share at 0, every seed is stratified
    for plain in (
        EmbeddingSearch(space, FAST, teacher, 40, seed=3),
        EmbeddingSearch(space, replace(FAST, fitted_seeds=0.0), teacher, 40, seed=3, target=target),
    ):
        assert sum(space.cost(c).params <= limit and len(set(c.ratios)) == 1 for c in plain.propose(8)) <= 1


def test_n2n_objective_is_the_log_reward_on_predictions(space: CompressionSpace) -> None:
    teacher = _teacher(space)
    search = EmbeddingSearch(space, replace(FAST, objective="n2n"), teacher, 40, seed=0)
    ratio = 4.0
    value = search.objective(torch.tensor(0.95), torch.tensor(-math.log(ratio)))
    c = log_compression(ratio, space.max_compression())
    assert float(value) == pytest.approx(c * (2 - c) * 0.95 / teacher.accuracy, rel=1e-5)
    # the paper reward is the same formula with C = 1 - 1/ratio
    paper = n2n_reward(0.95, int(teacher.params / ratio), teacher.accuracy, teacher.params)
    assert paper == pytest.approx((1 - 1 / ratio) * (1 + 1 / ratio) * 0.95 / teacher.accuracy, rel=1e-3)


def test_an_exhausted_space_still_gets_proposals() -> None:
    torch.manual_seed(0)
    tiny = CompressionSpace.from_model(create_model("lenet5", (1, 28, 28), 10).eval(), (1, 28, 28), ratios=(0.5, 1.0))
    options = EmbeddingOptions(batch_size=8, seed_candidates=4, unlabelled=0, epochs=2, warm_epochs=1, hidden=8)
    search = EmbeddingSearch(tiny, options, _teacher(tiny), 24, seed=0)
    proposals, _ = _run(search, FakeEvaluator(tiny), 24)
    unique = {tiny.candidate_hash(c) for c in proposals}
    assert len(unique) == 15  # every valid student of this space (16) but the teacher, then repeats
    assert all(tiny.check(c) is None for c in proposals)


def test_observe_checks_the_number_of_results(space: CompressionSpace) -> None:
    search = EmbeddingSearch(space, FAST, _teacher(space), 40, seed=0)
    batch = search.propose(4)
    with pytest.raises(ValueError, match="3 results for 4 proposals"):
        search.observe([FakeEvaluator(space)(c) for c in batch[:3]])


def test_failed_results_are_data_for_reconstruction_only(space: CompressionSpace) -> None:
    search = EmbeddingSearch(space, FAST, _teacher(space), 40, seed=0)
    batch = search.propose(4)
    failed = [
        Result(c, space.candidate_hash(c), "failed: out of memory", None, None, None, None, 0, False) for c in batch
    ]
    search.observe(failed)
    known = [search.samples[space.candidate_hash(c)] for c in batch]
    assert not any(s.ok for s in known)
    again = search.propose(4)
    assert again and not {space.candidate_hash(c) for c in batch} & {space.candidate_hash(c) for c in again}


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"batch_size": 0}, "--batch-size"),
        ({"max_seed_share": 1.0}, "--max-seed-share"),
        ({"fitted_seeds": 1.5}, "--fitted-seeds"),
        ({"objective": "reward"}, "--objective"),
        ({"step_size": 0.0}, "--step-size"),
        ({"trust_radius": -1.0}, "--trust-radius"),
        ({"seed_candidates": -1}, "--seed-candidates"),
        ({"mutation_rate": 0.0}, "--mutation-rate"),
        ({"size_weight": -0.1}, "--size-weight"),
    ],
)
def test_options_are_validated_with_the_option_named(changes: dict[str, object], option: str) -> None:
    with pytest.raises(ArchcompressError, match=option):
        replace(EmbeddingOptions(), **changes).validate()  # type: ignore[arg-type]


def test_codec_save_load_round_trip_and_warm_start(space: CompressionSpace, tmp_path: Path) -> None:
    evaluate = FakeEvaluator(space)
    search = EmbeddingSearch(space, replace(FAST, batch_size=8), _teacher(space), 24, seed=0)
    _run(search, evaluate, 24)
    path = search.save_codec(tmp_path / "codec")
    assert path == tmp_path / "codec" / CODEC_FILE and not list(path.parent.glob(".*tmp"))
    codec, model = load_codec(path.parent, space)
    tokens = search.codec.encode([space.uniform_candidate(0.5), space.teacher_candidate()])
    with torch.no_grad():
        before = search.model.predict(search.model.encode(tokens))
        after = model.predict(model.encode(tokens))
    assert torch.equal(before.accuracy, after.accuracy) and torch.equal(before.log_params, after.log_params)
    assert codec.norm == search.codec.norm
    # --codec: a new search starts from the saved weights (and so trains only warm_epochs)
    warm = EmbeddingSearch(space, replace(FAST, codec=str(path)), _teacher(space), 24, seed=0)
    assert warm._warm
    for name, tensor in model.state_dict().items():
        assert torch.equal(warm.model.state_dict()[name], tensor)


def test_loading_an_incompatible_codec_fails_clearly(space: CompressionSpace, tmp_path: Path) -> None:
    search = EmbeddingSearch(space, FAST, _teacher(space), 40, seed=0)
    path = search.save_codec(tmp_path)
    torch.manual_seed(0)
    other = CompressionSpace.from_model(
        create_model("vgg11", (1, 28, 28), 10, {"width": 0.25}).eval(), (1, 28, 28), ratios=(0.25, 0.5, 1.0)
    )
    with pytest.raises(ArchcompressError, match="use the same ratio sets"):
        load_codec(path, other)
    payload = torch.load(path, weights_only=True)
    payload["feature_schema"]["version"] = 0
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ArchcompressError, match="schema version 0"):
        load_codec(tmp_path / "old.pt", space)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ArchcompressError, match="not a readable codec file"):
        load_codec(tmp_path / "junk.pt", space)
    torch.save({"format": "something-else"}, tmp_path / "policy.pt")
    with pytest.raises(ArchcompressError, match="not an archcompress codec file"):
        load_codec(tmp_path / "policy.pt", space)
    with pytest.raises(ArchcompressError, match="does not exist"):
        EmbeddingSearch(space, replace(FAST, codec=str(tmp_path / "missing")), _teacher(space), 40, seed=0)


def test_fit_predictor_then_predict_ranks_held_out_candidates(space: CompressionSpace) -> None:
    evaluate = FakeEvaluator(space)
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng, keep_prob=0.8) for _ in range(120)]
    results = [evaluate(c) for c in candidates]
    train, held = results[:90], [r for r in results[90:] if r.ok]
    search = EmbeddingSearch(space, FAST, _teacher(space), budget=10, seed=0, prior=train)
    search.fit_predictor()
    predicted = search.predict([r.candidate for r in held])
    assert predicted.accuracy.shape == (len(held),) and predicted.log_params.shape == (len(held),)
    true_log = np.log([r.params / space.teacher_cost.params for r in held])  # type: ignore[operator]
    assert np.corrcoef(predicted.log_params.numpy(), true_log)[0, 1] > 0.9


def test_a_promotion_updates_the_predictor_targets_and_forces_a_refit(space: CompressionSpace) -> None:
    search = EmbeddingSearch(space, replace(FAST, batch_size=6), _teacher(space), 12, seed=0)
    evaluate = FakeEvaluator(space)
    _, results = _run(search, evaluate, 12)
    first = next(r for r in results if r.ok)
    search._fitted_size = len(search.samples)  # as after a fit
    search.revise([replace(first, val_accuracy=0.5, rung=1, epochs=3)])
    assert search.samples[first.candidate_hash].accuracy == 0.5 and search._fitted_size == -1
    search.revise([replace(first, candidate_hash="unknown", val_accuracy=0.1)])  # not a known sample: ignored
    assert search.samples[first.candidate_hash].accuracy == 0.5
