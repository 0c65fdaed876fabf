"""Run settings: YAML round trip, clear errors for bad files and values, and the --target syntax."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from archcompress.config import CompressConfig, parse_target
from archcompress.data import DataOptions
from archcompress.errors import ArchcompressError
from archcompress.evaluate import Budget, SpaceOptions
from archcompress.methods import methods_with_options
from archcompress.search.n2n.search import PAPER_SHRINK_LR, N2NOptions


def full_config() -> CompressConfig:
    """Every field away from its default, nested dataclasses and tuples included."""
    return CompressConfig(
        teacher="/models/teacher.pt",
        out="runs/a",
        dataset="digits",
        method="random",
        budget=7,
        target=12.5,
        preset="paper",
        seed=3,
        device="cpu",
        executor="process",
        workers=2,
        ray_address="ray://head:10001",
        final_epochs=4,
        store="/stores/shared.sqlite",
        data=DataOptions(data_root=Path("/data"), download=True, val_fraction=0.2, split_seed=5, image_size=64),
        candidate=Budget(epochs=3, max_steps=40, subset=500, loss="kd", lr=1e-3, init="scratch", schedule="none"),
        space=SpaceOptions(ratios=(0.25, 0.5, 1.0), kernel_ratios=(0.6, 1.0), min_channels=4),
    )


@pytest.mark.parametrize("config", [full_config(), CompressConfig(teacher="t.pt", out="run")], ids=["full", "defaults"])
def test_yaml_round_trip_gives_an_equal_config(config: CompressConfig, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    loaded = CompressConfig.from_yaml(path)
    assert loaded == config
    assert isinstance(loaded.space.ratios, tuple) and isinstance(loaded.data, DataOptions)
    if config.data.data_root is not None:
        assert isinstance(loaded.data.data_root, Path)
    # and the text lists every setting, defaults included
    raw = yaml.safe_load(path.read_text())
    sections = set(methods_with_options())
    assert sections == {"n2n", "embedding", "uniform"}
    assert set(raw) == {f.name for f in dataclasses.fields(CompressConfig)} - {"methods"} | sections
    assert set(raw["candidate"]) == {f.name for f in dataclasses.fields(Budget)}


def test_a_hand_written_subset_of_keys_takes_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("teacher: t.pt\nout: run\nbudget: 5\ncandidate:\n  epochs: 1\nspace:\n  ratios: [0.5, 1.0]\n")
    loaded = CompressConfig.from_yaml(path)
    assert loaded == CompressConfig(
        teacher="t.pt", out="run", budget=5, candidate=Budget(epochs=1), space=SpaceOptions(ratios=(0.5, 1.0))
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("teacher: t.pt\nout: run\nbudjet: 5\n", ["unknown setting(s) budjet", "budget"]),
        ("teacher: t.pt\nout: run\ncandidate:\n  epoch: 1\n", ["candidate", "unknown setting(s) epoch"]),
        ("teacher: t.pt\nout: [run\n", ["cannot read config"]),  # malformed YAML
        ("teacher: t.pt\n\tout: run\n", ["cannot read config"]),  # a tab is not YAML indentation
        ("- teacher\n- out\n", ["must be a YAML mapping"]),
        ("", ["must be a YAML mapping"]),
        ("out: run\n", ["teacher"]),  # a required setting is missing
    ],
)
def test_bad_config_files_are_clear_errors(text: str, words: list[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ArchcompressError) as caught:
        CompressConfig.from_yaml(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('budget: "20"\n', ["setting budget must be int", "'20'"]),
        ("candidate:\n  lr: 1e-3\n", [":candidate: setting lr must be float", "write 1.0e-3"]),
        ("candidate: 5\n", ["setting candidate must be a mapping"]),
        ("target: ten\n", ["setting target must be float or null"]),
        ("space:\n  ratios: [0.5, half]\n", ["setting ratios must be a list of numbers"]),
        ("space:\n  ratios: 0.5\n", ["setting ratios must be a list of numbers"]),
        ("workers: true\n", ["setting workers must be int"]),
        ("data:\n  download: 1\n", ["setting download must be bool"]),
    ],
)
def test_mistyped_values_are_clear_errors(text: str, words: list[str], tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("teacher: t.pt\nout: run\n" + text)
    with pytest.raises(ArchcompressError) as caught:
        CompressConfig.from_yaml(path)
    for word in words:
        assert word in str(caught.value)


def test_yaml_numbers_and_nulls_are_accepted_where_they_fit(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "teacher: t.pt\nout: run\ntarget: 10\nstore: null\ncandidate:\n  lr: 1.0e-3\n  max_steps: null\n"
        "space:\n  ratios: [1, 0.5]\n  kernel_ratios: null\ndata:\n  data_root: /data\n"
    )
    loaded = CompressConfig.from_yaml(path)
    assert loaded.target == 10 and loaded.store is None
    assert loaded.candidate.lr == 0.001 and loaded.space.ratios == (1, 0.5)
    assert loaded.data.data_root == Path("/data")
    loaded.validate()


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArchcompressError, match="cannot read config"):
        CompressConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10x", 10.0), ("10", 10.0), ("10.5x", 10.5), (" 4X ", 4.0), (".5x", 0.5), ("100000x", 100000.0), (None, None)],
)
def test_parse_target(text: str | None, expected: float | None) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["ten", "x", "", "-5x", "10xx", "1e", "10 x 2", "inf"])
def test_parse_target_rejects_other_text(text: str) -> None:
    with pytest.raises(ArchcompressError, match=r"--target .* is not a compression ratio"):
        parse_target(text)


def test_the_default_config_is_valid() -> None:
    CompressConfig(teacher="t.pt", out="run").validate()
    full_config().validate()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"budget": 0}, "--budget"),
        ({"budget": -3}, "--budget"),
        ({"method": "n2n-rl"}, "--method 'n2n-rl'"),
        ({"executor": "dask"}, "--executor"),
        ({"target": 1.0}, "--target"),
        ({"target": 0.5}, "--target"),
        ({"workers": 0}, "--workers"),
        ({"final_epochs": 0}, "--final-epochs"),
        ({"final_loss": "mse"}, "--final-loss"),
        ({"preset": "slow"}, "--preset"),
        ({"candidate": Budget(epochs=0)}, "epoch"),
        ({"candidate": Budget(subset=0)}, "--subset"),
        ({"candidate": Budget(loss="mse")}, "--loss"),  # type: ignore[arg-type]
        ({"candidate": Budget(lr=-1.0)}, "--lr"),
    ],
)
def test_validate_rejects_impossible_settings(change: dict[str, object], words: str) -> None:
    config = dataclasses.replace(CompressConfig(teacher="t.pt", out="run"), **change)  # type: ignore[arg-type]
    with pytest.raises(ArchcompressError, match=words.replace("(", r"\(")):
        config.validate()


def test_target_just_above_one_is_accepted() -> None:
    CompressConfig(teacher="t.pt", out="run", target=1.01).validate()


def test_a_truncated_run_config_is_refused_not_filled_with_defaults(tmp_path) -> None:
    import pytest

    from archcompress.config import CompressConfig
    from archcompress.errors import ArchcompressError

    path = tmp_path / "config.yaml"
    text = CompressConfig(teacher="t.pt", out="run").to_yaml()
    path.write_text(text)
    assert CompressConfig.from_yaml(path) == CompressConfig(teacher="t.pt", out="run")
    path.write_text(text[: len(text) * 2 // 3].rsplit("\n", 1)[0] + "\n")  # valid YAML, settings missing
    with pytest.raises(ArchcompressError, match="lacks setting"):
        CompressConfig.from_yaml(path)
    hand_written = tmp_path / "hand.yaml"
    hand_written.write_text("teacher: t.pt\nout: run\nbudget: 5\n")  # a subset, written by hand: fine
    assert CompressConfig.from_yaml(hand_written).budget == 5


def test_the_paper_preset_applies_from_a_hand_written_config_and_from_create(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("teacher: t.pt\nout: run\npreset: paper\ncandidate:\n  batch_size: 200\nn2n:\n  rollouts: 7\n")
    loaded = CompressConfig.from_yaml(path)
    assert loaded.candidate == Budget.paper(batch_size=200)  # the preset's budget, with the file's change
    n2n = loaded.options_for("n2n")
    assert (n2n.shrink_lr, n2n.stage1_width, n2n.rollouts) == (PAPER_SHRINK_LR, "full", 7)
    created = CompressConfig.create("t.pt", "run", preset="paper", n2n=N2NOptions(rollouts=7))
    assert created.candidate == Budget.paper() and created.options_for("n2n").rollouts == 7
    assert "linear" not in loaded.space.removable and "linear" not in created.space.removable  # the N2N code's
    fast = CompressConfig.create("t.pt", "run")
    assert fast.candidate == Budget(rungs=(1, 3, 9)) and "linear" in fast.space.removable
    assert (loaded.final_loss, created.final_loss, fast.final_loss) == ("candidate", "candidate", "kd")


def test_a_config_from_before_the_constraints_moved_still_reads(tmp_path: Path) -> None:
    """Run directories written before max_params & co. left the n2n section (and uniform_depth its own) resume."""
    raw = yaml.safe_load(CompressConfig(teacher="t.pt", out="run").to_yaml())
    for name in ("max_params", "max_macs", "max_latency_ms", "min_accuracy"):
        raw.pop(name)
    raw["n2n"].update(max_params=5000, max_macs=None, min_accuracy=0.5)
    raw["uniform_depth"] = True
    raw.pop("uniform")
    path = tmp_path / "config.yaml"
    path.write_text("# archcompress run config: every setting, defaults included\n" + yaml.safe_dump(raw))
    loaded = CompressConfig.from_yaml(path, complete=True)
    assert (loaded.max_params, loaded.min_accuracy, loaded.options_for("uniform").depth) == (5000, 0.5, True)


@pytest.mark.parametrize(("text", "value"), [("10x", 10.0), ("1e9x", 1e9), ("2.5e3", 2500.0), (" 12.5X ", 12.5)])
def test_target_syntax(text: str, value: float) -> None:
    assert parse_target(text) == value


def test_a_config_with_the_old_pooling_switch_reads_as_removable_kinds(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("teacher: t.pt\nout: run\nspace:\n  remove_pooling: false\n")
    assert CompressConfig.from_yaml(path).space.removable == ("block", "body", "gate", "dense-layer")
    path.write_text("teacher: t.pt\nout: run\nspace:\n  remove_pooling: true\n")
    assert CompressConfig.from_yaml(path).space.removable == ("block", "body", "max-pool", "gate", "dense-layer")


def test_a_run_written_before_rungs_and_linear_removal_resumes_as_it_ran(tmp_path: Path) -> None:
    """A run directory's config.yaml from before candidate.rungs, the linear default and n2n.fit_to_limit."""
    raw = yaml.safe_load(CompressConfig.create("t.pt", "run").to_yaml())
    raw.pop("promote")
    raw["candidate"].pop("rungs")
    raw["space"].pop("removable")
    raw["space"]["remove_pooling"] = True  # how such a file said it
    raw["n2n"].pop("fit_to_limit")
    raw.pop("final_loss")
    path = tmp_path / "config.yaml"
    path.write_text("# archcompress run config: every setting, defaults included\n" + yaml.safe_dump(raw))
    loaded = CompressConfig.from_yaml(path, complete=True)
    assert loaded.candidate.rungs == () and loaded.candidate.epochs == 2  # every candidate trained twice, once
    assert "linear" not in loaded.space.removable and loaded.options_for("n2n").fit_to_limit is False
    assert loaded.final_loss == "candidate"  # its student was distilled with the candidates' loss
    # the same file written by hand (no marker) takes today's defaults, except that epochs alone mean one fidelity
    hand = tmp_path / "hand.yaml"
    hand.write_text(yaml.safe_dump({"teacher": "t.pt", "out": "run", "n2n": {"rollouts": 3}}))
    fresh = CompressConfig.from_yaml(hand)
    assert fresh.candidate.rungs == (1, 3, 9) and "linear" in fresh.space.removable
    assert fresh.options_for("n2n").fit_to_limit is True and fresh.final_loss == "kd"


@pytest.mark.parametrize(("final_loss", "candidate_loss", "used"), [("kd", "l2", "kd"), ("l2", "kd", "l2"),
                                                                   ("candidate", "kd", "kd"),
                                                                   ("candidate", "l2", "l2")])  # fmt: skip
def test_the_final_distillation_takes_final_loss_and_keeps_the_rest_of_the_candidate_budget(
    final_loss: str, candidate_loss: str, used: str
) -> None:
    from archcompress.pipeline.final import final_budget

    candidate = Budget(loss=candidate_loss, lr=3e-3, batch_size=16)  # type: ignore[arg-type]
    config = CompressConfig(teacher="t.pt", out="run", final_loss=final_loss, candidate=candidate)
    config.validate()
    assert final_budget(config) == dataclasses.replace(candidate, loss=used)
