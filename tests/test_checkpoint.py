"""Teacher checkpoints: exact round trips, atomic writes, and clear refusals of anything that is not ours."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import random
import re
import shlex
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from archcompress.checkpoint import FORMAT, FORMAT_VERSION, TeacherMeta, load_teacher, read_checkpoint, save_teacher
from archcompress.errors import ArchcompressError
from archcompress.models import create_model
from archcompress.runtime import seed_everything

SHAPE = (1, 8, 8)


def make_meta(**changes: object) -> TeacherMeta:
    meta = TeacherMeta(
        model="resnet20",
        model_kwargs={"width": 0.25},
        input_shape=SHAPE,
        num_classes=10,
        dataset="digits",
        val_accuracy=0.875,
        test_accuracy=0.8125,
        params=123,
        epochs=3,
        seed=7,
        library_version="0.1.0",
        torch_version=str(torch.__version__),
        extra={"note": "round trip", "steps": [1, 2]},
    )
    return replace(meta, **changes)  # type: ignore[arg-type]


def make_model(seed: int = 0) -> nn.Module:
    """A small BN model whose running statistics have moved away from their initial values."""
    seed_everything(seed)
    model = create_model("resnet20", SHAPE, 10, {"width": 0.25})
    model.train()
    with torch.no_grad():
        model(torch.randn(16, *SHAPE) * 3 + 1)
    return model.eval()


def eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, nn.Module, TeacherMeta]:
    path = tmp_path / "teacher.pt"
    model, meta = make_model(), make_meta()
    save_teacher(path, model, meta)
    return path, model, meta


def refusal(path: Path) -> str:
    """The message of the ArchcompressError that both read_checkpoint and load_teacher must raise."""
    with pytest.raises(ArchcompressError) as read_info:
        read_checkpoint(path)
    with pytest.raises(ArchcompressError) as load_info:
        load_teacher(path)
    assert str(read_info.value) == str(load_info.value)
    return str(read_info.value)


# --- round trip ---------------------------------------------------------------------------------------------


def test_round_trip_gives_identical_logits_and_metadata(saved: tuple[Path, nn.Module, TeacherMeta]) -> None:
    path, model, meta = saved
    teacher = load_teacher(path)
    assert teacher.meta == meta
    assert teacher.meta.input_shape == SHAPE and isinstance(teacher.meta.input_shape, tuple)
    assert not teacher.model.training
    assert teacher.path == path
    assert teacher.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.randn(5, *SHAPE)
    assert torch.equal(eval_logits(teacher.model, x), eval_logits(model, x))
    original = model.state_dict()
    loaded = teacher.model.state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[key], loaded[key]) for key in original)  # BN buffers included


def test_read_checkpoint_returns_meta_and_state_without_building(saved: tuple[Path, nn.Module, TeacherMeta]) -> None:
    path, model, meta = saved
    read_meta, state = read_checkpoint(path)
    assert read_meta == meta
    assert state.keys() == model.state_dict().keys()


def test_round_trip_of_a_user_file_model(tmp_path: Path) -> None:
    source = """
        from torch import nn

        def make(num_classes, in_channels, hidden=4):
            return nn.Sequential(nn.Conv2d(in_channels, hidden, 3), nn.Flatten(), nn.LazyLinear(num_classes))
    """
    factory = tmp_path / "net.py"
    factory.write_text(textwrap.dedent(source))
    ref = f"{factory}:make"
    model = create_model(ref, SHAPE, 3, {"hidden": 5})
    x = torch.randn(4, *SHAPE)
    expected = eval_logits(model, x)  # materialises the lazy layer
    path = tmp_path / "user.pt"
    save_teacher(path, model, make_meta(model=ref, model_kwargs={"hidden": 5}, num_classes=3))
    teacher = load_teacher(path)
    assert teacher.meta.model == ref and teacher.meta.model_kwargs == {"hidden": 5}
    assert torch.equal(eval_logits(teacher.model, x), expected)


def test_sha256_changes_with_the_weights(tmp_path: Path) -> None:
    save_teacher(tmp_path / "a.pt", make_model(0), make_meta())
    save_teacher(tmp_path / "b.pt", make_model(1), make_meta())
    assert load_teacher(tmp_path / "a.pt").sha256 != load_teacher(tmp_path / "b.pt").sha256


# --- atomic writes ------------------------------------------------------------------------------------------


def test_save_leaves_only_the_checkpoint_and_replaces_an_old_one(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "teacher.pt"
    save_teacher(path, make_model(0), make_meta())
    first = path.read_bytes()
    save_teacher(path, make_model(1), make_meta(seed=8))
    assert sorted(p.name for p in path.parent.iterdir()) == ["teacher.pt"]
    assert path.read_bytes() != first
    assert load_teacher(path).meta.seed == 8


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failed_save_keeps_the_previous_file(
    saved: tuple[Path, nn.Module, TeacherMeta], monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    path, _, meta = saved
    before = path.read_bytes()
    during: list[dict[str, bytes]] = []

    def failing_save(obj: object, handle: object) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        handle.flush()  # type: ignore[attr-defined]
        during.append({p.name: p.read_bytes() for p in path.parent.iterdir()})
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(type(error)):
        save_teacher(path, make_model(1), make_meta(seed=99))
    monkeypatch.undo()
    # While writing, the partial data went to a temporary file beside the target, never to the target itself.
    (snapshot,) = during
    temporary = [name for name in snapshot if name != "teacher.pt"]
    assert len(temporary) == 1 and temporary[0].endswith(".tmp")
    assert snapshot[temporary[0]].startswith(b"PK\x03\x04 half")
    assert snapshot["teacher.pt"] == before
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["teacher.pt"]
    assert load_teacher(path).meta == meta


# --- refusals -----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = refusal(tmp_path / "absent.pt")
    assert "does not exist" in message and "absent.pt" in message


@pytest.mark.parametrize("keep", [0.5, 0.9], ids=["half", "most"])
def test_truncated_checkpoint(saved: tuple[Path, nn.Module, TeacherMeta], keep: float) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    message = refusal(path)
    assert "is truncated or damaged (torch.load failed with " in message
    assert re.search(r"failed with \w+Error: \S", message)  # torch's exception, named, with its message
    assert "re-create it" in message


@pytest.mark.parametrize(
    "content",
    [b"", b"hello\n", b"teacher weights: see README\n", b"\x00\x01\x02"],
    ids=["empty", "text", "prose", "binary"],
)
def test_a_file_that_is_not_a_checkpoint_says_so_without_a_bare_error_code(tmp_path: Path, content: bytes) -> None:
    # A text file's bytes read as pickle opcodes: "hello" made torch.load raise KeyError(101), shown as "(101)".
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    message = refusal(path)
    assert f"checkpoint {path} is not a PyTorch file (neither a zip archive nor a pickle)" in message
    assert not re.search(r"\(\d+\)", message)
    assert "re-create it with `archcompress train-teacher`" in message


def test_random_bytes(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(4096)
    assert data[:1] not in (b"\x80", b"P")
    path = tmp_path / "noise.pt"
    path.write_bytes(data)
    message = refusal(path)
    assert "not a PyTorch file" in message
    assert "Python objects" not in message  # noise is not mistaken for a code-carrying pickle


def test_plain_state_dict_is_not_a_teacher_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(make_model().state_dict(), path)
    message = refusal(path)
    assert "not an archcompress teacher checkpoint" in message
    assert "file.py:Factory" in message


class RunsCommand:
    """Unpickling this runs a shell command (the classic malicious-pickle payload)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def touch(marker: Path) -> RunsCommand:
    return RunsCommand(f"touch {shlex.quote(str(marker))}")


def test_the_malicious_payload_is_live(tmp_path: Path) -> None:
    """Control: unpickled without protection, the payload does run (so the refusal tests below mean something)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(touch(marker)))  # deliberately unsafe, on our own payload
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_code_is_refused_never_executed(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": {"model": "lenet5"},
        "state_dict": {},
        "x": touch(marker),
    }
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(payload, handle)
    message = refusal(path)
    assert "refusing to unpickle" in message
    assert not marker.exists()


def test_arbitrary_class_instance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "meta": argparse.Namespace(a=1)}, path)
    assert "refusing to unpickle" in refusal(path)


def test_newer_format_version_asks_for_an_upgrade(saved: tuple[Path, nn.Module, TeacherMeta]) -> None:
    path = saved[0]
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    message = refusal(path)
    assert f"format version {FORMAT_VERSION + 1}" in message and "upgrade archcompress" in message


@pytest.mark.parametrize("damage", ["no-meta", "no-state", "state-not-dict", "meta-missing-field"])
def test_damaged_payload(saved: tuple[Path, nn.Module, TeacherMeta], damage: str) -> None:
    path = saved[0]
    payload = torch.load(path, weights_only=True)
    if damage == "no-meta":
        del payload["meta"]
    elif damage == "no-state":
        del payload["state_dict"]
    elif damage == "state-not-dict":
        payload["state_dict"] = [1, 2]
    else:
        del payload["meta"]["num_classes"]
    torch.save(payload, path)
    assert "is damaged" in refusal(path)


def test_state_dict_that_does_not_match_the_model(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.pt"
    save_teacher(path, make_model(), make_meta(model_kwargs={"width": 0.5}))  # weights are for width 0.25
    read_checkpoint(path)  # the file itself is fine
    with pytest.raises(ArchcompressError) as info:
        load_teacher(path)
    message = str(info.value)
    assert "does not match model 'resnet20'" in message
    assert "retrain the teacher" in message
