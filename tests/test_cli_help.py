"""The CLI's help and global flags: defaults from the options dataclasses (one source), every method listed,
flags shown as flags, --debug anywhere, consoles at the terminal's width of each invocation."""

from __future__ import annotations

import inspect
import re

import pytest

from archcompress import cli
from archcompress.cli import COMPRESS_FLAGS
from archcompress.config import CompressConfig
from archcompress.errors import ArchcompressError
from archcompress.methods import get_method, method_names
from archcompress.pipeline.settings import get_setting
from cli_helpers import invoke


def option_help(text: str, flag: str) -> str:
    """The help row of ``flag`` in a wide (one line per option) rich help screen."""
    rows = [line for line in text.splitlines() if re.search(rf"{re.escape(flag)}\b(?!-)", line)]
    assert rows, f"{flag} not in the help"
    return rows[0]


@pytest.fixture(scope="module")
def compress_help() -> str:
    result = invoke(["compress", "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_compress_flag_maps_to_a_setting_and_every_setting_flag_is_declared() -> None:
    parameters = set(inspect.signature(cli.compress).parameters) - {"teacher", "out", "resume", "config"}
    assert parameters == set(COMPRESS_FLAGS)
    config = CompressConfig.create("t.pt", "run")
    for path in COMPRESS_FLAGS.values():
        get_setting(config, path)  # raises for a path that names no setting


@pytest.mark.parametrize(
    ("flag", "path"),
    [("--budget", "budget"), ("--rollouts", "n2n.rollouts"), ("--final-epochs", "final_epochs"),
     ("--min-channels", "space.min_channels"), ("--size-weight", "embedding.size_weight"),
     ("--loss", "candidate.loss"), ("--fitted-seeds", "embedding.fitted_seeds")],
)  # fmt: skip
def test_help_shows_the_dataclass_default(compress_help: str, flag: str, path: str) -> None:
    value = get_setting(CompressConfig.create("t.pt", "run"), path)
    assert f"[default: {value}" in option_help(compress_help, flag)


def test_preset_dependent_defaults_show_both(compress_help: str) -> None:
    assert "[default: 2; paper preset: 5]" in option_help(compress_help, "--epochs")


def test_no_help_text_lost_to_markup(compress_help: str) -> None:
    assert "[default: none]" in option_help(compress_help, "--dataset")  # rich markup used to eat [default: ...]
    assert not re.search(r"\w \.", compress_help)  # "Data set ." was the symptom
    inspect_help = invoke(["inspect", "--help"]).output
    assert "[default: 10]" in option_help(inspect_help, "--num-classes")


def test_method_defaults_to_n2n_and_its_help_lists_every_method(compress_help: str) -> None:
    assert CompressConfig(teacher="t.pt", out="run").method == "n2n"
    assert "[default: n2n]" in compress_help
    flat = " ".join(compress_help.replace("│", " ").split())
    for name in method_names():
        assert f"{name}: {get_method(name).summary}" in flat


def test_flags_do_not_show_a_value_type(compress_help: str) -> None:
    for flag in ("--resume", "--keep-pooling", "--uniform-depth", "--help"):
        assert "<bool>" not in option_help(compress_help, flag)
    assert "<int>" in option_help(compress_help, "--budget")  # options that take a value still show it


def test_debug_is_accepted_after_the_command(tmp_path) -> None:
    args = ["train-teacher", "--model", "lenett5", "--dataset", "digits", "--out", str(tmp_path / "t.pt")]
    with pytest.raises(ArchcompressError, match="unknown model"):
        cli.run([*args, "--debug"])  # propagates, as with --debug before the command
    with pytest.raises(SystemExit) as exited:
        cli.run(args)
    assert exited.value.code == 2


def test_consoles_take_the_width_of_each_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "57")
    assert cli.stdout_console().width == 57
    monkeypatch.setenv("COLUMNS", "133")
    assert cli.stderr_console().width == 133


def test_narrow_help_still_lists_every_method() -> None:
    narrow = invoke(["compress", "--help"], columns=70).output
    assert all(name in narrow for name in method_names())


def test_removable_and_keep_pooling_set_the_space(tmp_path) -> None:
    from archcompress.cli import _compress_changes

    assert _compress_changes({"removable": "linear,block"}) == {"space.removable": ("linear", "block")}
    assert _compress_changes({"keep_pooling": True}) == {
        "space.removable": ("block", "body", "gate", "dense-layer", "linear")
    }
    with pytest.raises(ArchcompressError, match="instead of adding --keep-pooling"):
        _compress_changes({"removable": "linear", "keep_pooling": True})
    result = invoke(["compress", str(tmp_path / "t.pt"), "--out", str(tmp_path / "run"), "--removable", "fc"])
    assert result.exit_code == 2 and "'fc' is not a kind of unit" in result.stderr
