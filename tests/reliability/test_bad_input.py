"""Bad input through the CLI: one clear ``error:`` line and exit code 2 (a near-chance teacher: a warning only).

Cases already covered elsewhere are not repeated here: an unreachable ``--target``, ``--budget 0``, a teacher for
another data set's input shape, a corrupt ``--store`` (``tests/test_compress.py``); unsupported layers of the
tracer with their node, module and line (``tests/space/test_trace.py``); pickled code in a teacher checkpoint
at the library level (``tests/test_checkpoint.py``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from archcompress.checkpoint import TeacherMeta, save_teacher
from archcompress.models import create_model
from cli_helpers import assert_one_line_error, invoke

TINY = ["--epochs", "1", "--subset", "200", "--final-epochs", "1", "--device", "cpu"]

NETS = """
import torch
from torch import nn


class Recurrent(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.lstm = nn.LSTM(40, 16, batch_first=True)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):  # (B, 1, 40): one step of 40 features (an MNIST-1D signal)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class Custom(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = torch.special.erf(self.conv(x))
        return self.fc(x.mean((2, 3)))


def lstm(num_classes):
    return Recurrent(num_classes)


def custom(num_classes):
    return Custom(num_classes)


def dense(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))


def five_outputs(num_classes):  # ignores num_classes
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
"""


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "nets.py"
    path.write_text(textwrap.dedent(NETS))
    return path


def checkpoint(path: Path, model: torch.nn.Module, ref: str, shape: tuple[int, ...], classes: int) -> Path:
    """A teacher checkpoint as train-teacher writes it, with a freshly initialised model (no training)."""
    save_teacher(path, model, TeacherMeta(ref, {}, shape, classes, "digits"))
    return path


@pytest.fixture(scope="module")
def fresh_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LeNet-5 digits checkpoint, for errors that come before any training."""
    path = tmp_path_factory.mktemp("fresh") / "lenet5.pt"
    return checkpoint(path, create_model("lenet5", (1, 8, 8), 10), "lenet5", (1, 8, 8), 10)


# --- unsupported models ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "shape", "words"),
    [
        ("lstm", "1,40", ["torch.nn.modules.rnn.LSTM", "node 'lstm'", "module 'lstm'", "self.lstm(x)"]),
        ("custom", "1,8,8", ["torch.special.erf", "node 'special_erf'"]),
    ],
)
def test_an_unsupported_layer_names_its_node_and_source_line(
    nets: Path, factory: str, shape: str, words: list[str]
) -> None:
    line = assert_one_line_error(invoke(["inspect", f"{nets}:{factory}", "--input-shape", shape]), *words)
    assert re.search(r"nets\.py:\d+ `", line)  # the line of the user's forward()
    assert "is not supported; archcompress supports" in line


def test_an_unsupported_teacher_is_refused_before_the_run_directory_exists(nets: Path, tmp_path: Path) -> None:
    model = create_model(f"{nets}:lstm", (1, 40), 10)
    teacher = checkpoint(tmp_path / "lstm.pt", model, f"{nets}:lstm", (1, 40), 10)
    out = tmp_path / "run"
    assert_one_line_error(
        invoke(["compress", teacher, "--out", out, "--dataset", "mnist1d", "--budget", "2", *TINY]), "LSTM"
    )
    assert not out.exists()


# --- shapes and classes that do not fit ------------------------------------------------------------------------


def test_an_input_shape_the_model_cannot_take(nets: Path) -> None:
    assert_one_line_error(invoke(["inspect", f"{nets}:dense", "--input-shape", "3,32,32"]), "cannot take inputs")


def test_a_checkpoint_whose_model_does_not_take_its_own_input_shape(nets: Path, tmp_path: Path) -> None:
    model = create_model(f"{nets}:dense", (1, 8, 8), 10)
    teacher = checkpoint(tmp_path / "t.pt", model, f"{nets}:dense", (3, 8, 8), 10)  # the metadata lies
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY]), "inconsistent", "(3, 8, 8)")
    assert not out.exists()


def test_a_data_set_with_another_class_count_than_the_teacher(tmp_path: Path) -> None:
    teacher = checkpoint(tmp_path / "t.pt", create_model("lenet5", (1, 8, 8), 3), "lenet5", (1, 8, 8), 3)
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY]), "3 outputs", "10 classes")
    assert not out.exists()


def test_a_model_whose_output_differs_from_its_checkpoints_class_count(nets: Path, tmp_path: Path) -> None:
    model = create_model(f"{nets}:five_outputs", (1, 8, 8), 10)
    teacher = checkpoint(tmp_path / "t.pt", model, f"{nets}:five_outputs", (1, 8, 8), 10)
    out = tmp_path / "run"
    assert_one_line_error(invoke(["compress", teacher, "--out", out, *TINY]), "outputs (2, 5)", "10 classes")
    assert not out.exists()
    assert_one_line_error(invoke(["inspect", teacher]), "outputs (2, 5)")


# --- impossible budgets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--budget", "-3"], ["--budget", "-3"]),
        (["--epochs", "0"], ["at least 1 epoch"]),
        (["--epochs", "-2"], ["at least 1 epoch"]),
        (["--final-epochs", "0"], ["--final-epochs"]),
        (["--subset", "0"], ["--subset"]),
        (["--workers", "0"], ["--workers"]),
        (["--seed", "-1"], ["--seed"]),
        (["--method", "n2n", "--rollouts", "0"], ["--rollouts"]),
        (["--method", "n2n", "--max-params", "0"], ["--max-params"]),
        (["--method", "n2n", "--max-macs", "-5"], ["--max-macs"]),
        (["--method", "n2n", "--min-accuracy", "1.5"], ["--min-accuracy"]),
        (["--method", "prune", "--max-params", "-1"], ["--max-params"]),
        (["--method", "embedding", "--seed-candidates", "-1"], ["--seed-candidates"]),
        (["--target", "0.5x"], ["--target"]),
        (["--target", "-3"], ["--target"]),
    ],
)
def test_zero_or_negative_budgets_are_refused_before_anything_runs(
    fresh_teacher: Path, tmp_path: Path, options: list[str], words: list[str]
) -> None:
    out = tmp_path / "run"
    args = ["compress", fresh_teacher, "--out", out, "--budget", "2", *TINY]
    assert_one_line_error(invoke([*args, *options]), *words)
    assert not out.exists()


def test_evaluate_refuses_zero_epochs(fresh_teacher: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "cand.json"
    candidate.write_text('{"keep": [], "ratios": []}')
    assert_one_line_error(invoke(["evaluate", fresh_teacher, "--candidate", candidate, "--epochs", "0"]), "epoch")


# --- a teacher at chance -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_teacher_at_chance_gets_a_warning_not_an_error(home: Path, tmp_path: Path) -> None:
    model = create_model("lenet5", (1, 8, 8), 10)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()  # constant logits: exactly one class predicted, ~10% on the balanced digits
    teacher = checkpoint(tmp_path / "blank.pt", model, "lenet5", (1, 8, 8), 10)
    out = tmp_path / "run"
    result = invoke(["compress", teacher, "--out", out, "--budget", "2", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "near chance" in warnings[0] and "train the teacher longer" in warnings[0]
    assert "near chance" in (out / "log.txt").read_text()
    assert json.loads((out / "report.json").read_text())["complete"] is True


# --- pickled code ------------------------------------------------------------------------------------------------


class WritesMarker:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def evil_pickle(path: Path, marker: Path, payload: dict[str, object] | None = None) -> Path:
    torch.save({**(payload or {}), "x": WritesMarker(marker)}, path)
    return path


def test_the_marker_payload_is_live(tmp_path: Path) -> None:
    """Control: unpickled without protection, the payload does run, so the refusals below mean something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(WritesMarker(marker)))  # deliberately unsafe, on our own payload
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_teacher_checkpoint_with_pickled_code_is_refused_by_every_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    teacher = evil_pickle(tmp_path / "evil.pt", marker, {"format": "archcompress-teacher", "format_version": 1})
    candidate = tmp_path / "cand.json"
    candidate.write_text('{"keep": [], "ratios": []}')
    out = tmp_path / "run"
    for args in (
        ["compress", teacher, "--out", out, *TINY],
        ["inspect", teacher],
        ["evaluate", teacher, "--candidate", candidate, "--epochs", "1", "--store", tmp_path / "s.sqlite"],
    ):
        assert_one_line_error(invoke(args), "refusing to unpickle")
    assert not marker.exists() and not out.exists()


@pytest.fixture(scope="module")
def finished_run(teacher: Path, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished N2N run (budget 2), with its student and policies; tests work on copies."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = invoke(["compress", teacher, "--out", out, "--method", "n2n", "--budget", "2", "--rollouts", "2", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_student_with_pickled_code_is_refused(finished_run: Path, tmp_path: Path) -> None:
    """Even with arch.json's weight hash matching, the weights file is read as plain tensors only."""
    run = shutil.copytree(finished_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    weights = evil_pickle(run / "student" / "model.pt", marker)
    arch = json.loads((run / "student" / "arch.json").read_text())
    arch["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (run / "student" / "arch.json").write_text(json.dumps(arch))
    assert_one_line_error(invoke(["export", run, "--format", "onnx"]), "model.pt", "never pickled code")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_policy_file_with_pickled_code_is_refused(finished_run: Path, teacher: Path, tmp_path: Path) -> None:
    policies = shutil.copytree(finished_run / "policies", tmp_path / "policies")
    marker = tmp_path / "pwned"
    evil_pickle(policies / "removal.pt", marker)
    out = tmp_path / "run"
    args = ["compress", teacher, "--out", out, "--method", "n2n", "--budget", "2", "--policy", policies, *TINY]
    assert_one_line_error(invoke(args), "--policy", "removal.pt")
    assert not marker.exists() and not out.exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_poisoned_logit_cache_is_never_unpickled(
    finished_run: Path, teacher: Path, home: Path, tmp_path: Path
) -> None:
    """The teacher-logit cache in ARCHCOMPRESS_HOME is data too: a planted pickle there is ignored and rebuilt."""
    cached = sorted(home.rglob("logits-*.pt"))
    assert cached, "the finished run should have cached the teacher's logits"
    marker = tmp_path / "pwned"
    for path in cached:
        evil_pickle(path, marker)
    candidate = tmp_path / "cand.json"
    candidate.write_text(json.dumps(json.loads((finished_run / "report.json").read_text())["student"]["candidate"]))
    args = ["evaluate", teacher, "--candidate", candidate, "--epochs", "1", "--device", "cpu"]
    result = invoke([*args, "--store", tmp_path / "s.sqlite"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert ": ok, val accuracy" in result.stdout
    assert not marker.exists()
    # the planted file of this teacher was read (and refused): it has been replaced by freshly computed logits
    assert any(holds_a_tensor(path) for path in cached)


def holds_a_tensor(path: Path) -> bool:
    try:
        return isinstance(torch.load(path, weights_only=True), torch.Tensor)
    except pickle.UnpicklingError:
        return False
