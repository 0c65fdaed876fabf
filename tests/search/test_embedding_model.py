"""The codec model: reconstruction, regression heads, gradient ascent in z, valid decodes, determinism."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from archcompress.runtime import torch_threads
from archcompress.search.embedding.codec import Choices, TokenCodec
from archcompress.search.embedding.model import CodecData, CodecModel, codec_loss, fit, token_accuracy
from archcompress.space import Candidate, CompressionSpace


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: the model is tiny, and this machine's two cores are shared."""
    with torch_threads(1):
        yield


def synthetic_accuracy(log_params: torch.Tensor) -> torch.Tensor:
    """A known function of size: flat near the teacher, falling fast past ~10x."""
    return 0.98 - 0.01 * log_params**2


def _data(space: CompressionSpace, codec: TokenCodec, candidates: list[Candidate], labelled: bool) -> CodecData:
    teacher = space.teacher_cost.params
    log_params = torch.tensor([math.log(space.cost(c).params / teacher) for c in candidates])
    ok = torch.full((len(candidates),), labelled)
    return CodecData(
        codec.encode(candidates), codec.choices(candidates), synthetic_accuracy(log_params), log_params, ok
    )


def _concat(a: CodecData, b: CodecData) -> CodecData:
    c = a.choices
    choices = Choices(torch.cat([c.keep, b.choices.keep]), torch.cat([c.ratio, b.choices.ratio]),
                      torch.cat([c.kernel, b.choices.kernel]), c.removable)  # fmt: skip
    return CodecData(torch.cat([a.tokens, b.tokens]), choices, torch.cat([a.accuracy, b.accuracy]),
                     torch.cat([a.log_params, b.log_params]), torch.cat([a.ok, b.ok]))  # fmt: skip


@dataclass
class Trained:
    codec: TokenCodec
    model: CodecModel
    train: CodecData
    test: CodecData
    test_candidates: list[Candidate]
    seconds: float


def _random(space: CompressionSpace, count: int, rng: np.random.Generator) -> list[Candidate]:
    return [space.sample(rng, keep_prob=float(rng.uniform(0.3, 1.0))) for _ in range(count)]


@pytest.fixture(scope="module")
def trained(space: CompressionSpace) -> Trained:
    """100 labelled and 200 unlabelled random candidates, 40 held out; one fit of 60 epochs."""
    codec = TokenCodec(space)
    rng = np.random.default_rng(0)
    labelled = _data(space, codec, _random(space, 100, rng), labelled=True)
    unlabelled = _data(space, codec, _random(space, 200, rng), labelled=False)
    test_candidates = _random(space, 40, rng)
    test = _data(space, codec, test_candidates, labelled=True)
    torch.manual_seed(0)
    model = CodecModel(codec.token_dim, codec.static_dim, len(codec.ratio_values))
    started = time.perf_counter()
    train = _concat(labelled, unlabelled)
    fit(model, train, codec.static, epochs=60, batch_size=64, generator=torch.Generator().manual_seed(0))
    return Trained(codec, model, train, test, test_candidates, time.perf_counter() - started)


def test_the_model_is_small_and_trains_in_seconds(trained: Trained) -> None:
    params = sum(p.numel() for p in trained.model.parameters())
    assert 5_000 < params < 100_000
    assert trained.seconds < 30  # ~3 s on one CPU thread; generous for a shared machine


def test_held_out_candidates_are_reconstructed_exactly(trained: Trained, space: CompressionSpace) -> None:
    assert token_accuracy(trained.model, trained.test, trained.codec.static) >= 0.99
    with torch.no_grad():
        z = trained.model.encode(trained.test.tokens)
        decoded = trained.codec.decode_batch(*trained.model.decode(z, trained.codec.static))
    pairs = zip(decoded, trained.test_candidates, strict=True)
    same = [space.candidate_hash(d) == space.candidate_hash(c) for d, c in pairs]
    assert sum(same) >= 0.95 * len(same)  # whole candidates: every token of the sequence right


def test_regression_heads_fit_a_known_function_of_the_candidate(trained: Trained) -> None:
    test = trained.test
    with torch.no_grad():
        prediction = trained.model.predict(trained.model.encode(test.tokens))
    params_rmse = float((prediction.log_params - test.log_params).pow(2).mean().sqrt())
    acc_rmse = float((prediction.accuracy - test.accuracy).pow(2).mean().sqrt())
    assert params_rmse < 0.35 * float(test.log_params.std())
    assert acc_rmse < 0.5 * float(test.accuracy.std())
    # an untrained model of the same shape is far off: the bar above is not trivially met
    torch.manual_seed(1)
    fresh = CodecModel(trained.codec.token_dim, trained.codec.static_dim, len(trained.codec.ratio_values))
    fresh.set_targets(trained.train)
    with torch.no_grad():
        untrained = fresh.predict(fresh.encode(test.tokens))
    assert float((untrained.log_params - test.log_params).pow(2).mean().sqrt()) > 2 * params_rmse


def test_gradient_ascent_in_z_improves_the_predicted_objective(trained: Trained) -> None:
    model = trained.model
    with torch.no_grad():
        z0 = model.encode(trained.test.tokens[:10])
    norm = float(z0.flatten(1).norm(dim=1).mean())

    def objective(z: torch.Tensor) -> torch.Tensor:
        prediction = model.predict(z)
        return prediction.accuracy - 0.05 * prediction.log_params  # rewards compression: away from the start

    z = z0.clone()
    for _ in range(10):
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(z).sum(), z)
        z = (z + 0.05 * norm * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1)).detach()
    with torch.no_grad():
        before, after = objective(z0), objective(z)
        assert bool((after > before).all())
        assert bool((model.predict(z).log_params < model.predict(z0).log_params).all())


def test_every_decode_of_a_random_embedding_is_a_valid_candidate(trained: Trained, space: CompressionSpace) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = trained.model.encode(trained.test.tokens)
        scale = float(z.std())
        random_z = torch.randn(z.shape[0] * 2, *z.shape[1:], generator=generator) * scale * 3
        decoded = trained.codec.decode_batch(*trained.model.decode(random_z, trained.codec.static))
    assert all(space.check(c) is None for c in decoded)
    assert len({space.candidate_hash(c) for c in decoded}) > 10  # decodes differ; not all the repair fallback


def test_fit_is_deterministic_and_skips_regression_for_failed_samples(space: CompressionSpace) -> None:
    codec = TokenCodec(space)
    data = _data(space, codec, _random(space, 12, np.random.default_rng(3)), labelled=True)
    failed = CodecData(data.tokens, data.choices, data.accuracy.clone(), data.log_params, data.ok.clone())
    failed.ok[:6] = False
    failed.accuracy[:6] = 1e6  # garbage where not ok must not matter

    def run(d: CodecData) -> dict[str, float]:
        torch.manual_seed(0)
        model = CodecModel(codec.token_dim, codec.static_dim, len(codec.ratio_values), hidden=16)
        return fit(model, d, codec.static, epochs=3, batch_size=4, generator=torch.Generator().manual_seed(0))

    assert run(data) == run(data)
    assert all(math.isfinite(v) and v < 100 for v in run(failed).values())


def test_the_loss_is_recon_plus_weighted_regression_terms(trained: Trained) -> None:
    model, data, static = trained.model, trained.test, trained.codec.static
    with torch.no_grad():
        plain = codec_loss(model, data, static, 1.0, 1.0)
        weighted = codec_loss(model, data, static, 2.0, 3.0)
    expected = plain.recon + 2.0 * plain.acc_mse + 3.0 * plain.params_mse
    assert torch.isclose(weighted.total, expected)


def test_the_model_runs_on_sequences_of_another_length(trained: Trained) -> None:
    model, codec = trained.model, trained.codec
    tokens = torch.randn(3, 30, codec.token_dim)
    with torch.no_grad():
        z = model.encode(tokens)
        keep, ratio, kernel = model.decode(z, torch.randn(30, codec.static_dim))
    assert z.shape[::2] == (3, 30) and keep.shape == (3, 30) and ratio.shape == (3, 30, len(codec.ratio_values))
    assert kernel is None
    with pytest.raises(ValueError, match="odd"):
        CodecModel(10, 5, 3, kernel=2)
