"""`archcompress compress --method embedding` end to end: prior evaluations, codec, resume, codec reuse."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from archcompress.evaluate import ResultStore
from cli_helpers import invoke, report_of

WIDE = {"COLUMNS": "400"}
TINY = ["--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu"]
EMBEDDING = ["--method", "embedding", "--budget", "8", "--seed-candidates", "4", "--round-size", "2"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARCHCOMPRESS_HOME", str(home))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield tiny_teacher
        torch.set_num_threads(before)


@pytest.mark.slow
def test_embedding_learns_from_the_shared_store_saves_its_codec_and_resumes(
    teacher: Path, tmp_path: Path, unfinished: Callable[[Path], Path]
) -> None:
    shared = tmp_path / "shared.sqlite"
    first = invoke(["compress", teacher, "--method", "random", "--budget", "5", *TINY, "--store", shared,
                   "--out", tmp_path / "random"])  # fmt: skip
    assert first.exit_code == 0, first.output

    run = tmp_path / "run"
    result = invoke(["compress", teacher, *EMBEDDING, *TINY, "--store", shared, "--out", run])
    assert result.exit_code == 0, result.output
    report = report_of(run)
    assert report["method"] == "embedding" and report["search"]["evaluations"] == 8
    assert report["embedding"]["prior_results"] == 5  # the random run's evaluations are training data
    assert json.loads((run / "prior.json").read_text())["candidate_hashes"]
    assert report["embedding"]["rounds"]  # per-round codec losses and predictions
    assert (run / "codec" / "codec.pt").is_file()
    own = {r.key.candidate_hash for r in ResultStore(run / "store.sqlite").query()}
    assert len(own) == 8

    resumed = invoke(["compress", "--resume", "--out", unfinished(run)])
    assert resumed.exit_code == 0, resumed.output
    again = report_of(run)
    assert again["search"]["from_store"] == again["search"]["proposals"]  # nothing trained twice
    assert again["student"]["candidate_hash"] == report["student"]["candidate_hash"]

    reuse = invoke(["compress", teacher, *EMBEDDING, *TINY, "--codec", run / "codec", "--seed", "1",
                   "--out", tmp_path / "reuse"])  # fmt: skip
    assert reuse.exit_code == 0, reuse.output


def test_a_codec_that_is_not_one_exits_2_before_the_run(teacher: Path, tmp_path: Path) -> None:
    bad = tmp_path / "codec.pt"
    bad.write_bytes(b"not a codec")
    run = tmp_path / "run"
    result = invoke(["compress", teacher, *EMBEDDING, *TINY, "--codec", bad, "--out", run])
    assert result.exit_code == 2, result.output
    assert "codec" in result.stderr and "Traceback" not in result.output and not run.exists()
