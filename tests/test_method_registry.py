"""The method registry: the 30-line example method of docs/methods/registry.md, run through compress and the CLI."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import archcompress
from archcompress.cli import app
from archcompress.config import CompressConfig
from archcompress.errors import ArchcompressError
from archcompress.methods import get_method, method_names
from archcompress.methods.registry import unregister_method
from archcompress.runtime import torch_threads

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods" / "registry.md"
TINY = {"budget": 3, "settings": {"candidate.epochs": 1, "candidate.subset": 200}, "final_epochs": 1}


@pytest.fixture(scope="module")
def example() -> Iterator[types.ModuleType]:
    """The doc's example method, defined by running its code block (as a user's module would be imported)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 40  # "a whole method in 30 lines", blank lines aside
    module = types.ModuleType("halving_example")
    sys.modules[module.__name__] = module  # as an import would (dataclasses look their module up)
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    yield module
    unregister_method("halving")
    del sys.modules[module.__name__]


@pytest.fixture(autouse=True)
def one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    with torch_threads(1):
        yield


def test_the_built_in_methods_are_registered_with_the_paper_first() -> None:
    assert method_names() == ("n2n", "embedding", "random", "uniform", "prune")
    assert all(get_method(name).summary for name in method_names())


def test_an_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(ArchcompressError, match="--method 'halvng' is not available: use one of n2n, embedding"):
        CompressConfig(teacher="t.pt", out="run", method="halvng").validate()


def test_the_doc_example_runs_end_to_end(example: types.ModuleType, tiny_teacher: Path, tmp_path: Path) -> None:
    assert "halving" in method_names()
    out = tmp_path / "run"
    result = archcompress.compress(tiny_teacher, out, method="halving", halving=example.HalvingOptions(start=0.5),
                                   **TINY)  # type: ignore[arg-type]  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "halving" and report["complete"] is True
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["halving"] == {"start": 0.5}  # its options section, written with every other setting
    space_ratios = CompressConfig(teacher="t", out="o").space.ratios
    # proposals: width 0.5, 0.25, 0.125 snapped to the ratio set, in that order
    expected = [min(space_ratios, key=lambda r, w=w: abs(r - w)) for w in (0.5, 0.25, 0.125)]
    chosen = report["student"]["candidate"]["ratios"]
    assert set(chosen) <= set(expected) and len(set(chosen)) == 1
    assert result.report["chosen"]["candidate_hash"] == report["student"]["candidate_hash"]
    # the config it wrote reads back with the method's options
    assert CompressConfig.from_yaml(out / "config.yaml").options_for("halving") == example.HalvingOptions(start=0.5)


def test_the_doc_example_runs_from_the_cli(example: types.ModuleType, tiny_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["compress", str(tiny_teacher), "--out", str(out), "--method", "halving", "--budget", "2", "--epochs", "1",
            "--subset", "200", "--final-epochs", "1", "--rollouts", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "--rollouts applies to --method n2n only: ignored by --method halving" in result.stderr
    assert json.loads((out / "report.json").read_text())["method"] == "halving"
