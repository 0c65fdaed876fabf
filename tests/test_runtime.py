"""Process helpers: seeding, device selection and atomic writes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from archcompress.errors import ArchcompressError
from archcompress.runtime import atomic_open, atomic_write_text, resolve_device, seed_everything


def draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


@pytest.mark.parametrize("seed", [0, 12345, 2**40 + 5])
def test_seed_everything_seeds_python_numpy_and_torch(seed: int) -> None:
    seed_everything(seed)
    first = draws()
    seed_everything(seed)
    again = draws()
    assert first[:2] == again[:2]
    assert torch.equal(first[2], again[2])
    seed_everything(seed + 1)
    other = draws()
    assert other[0] != first[0] and other[1] != first[1] and not torch.equal(other[2], first[2])


def test_resolve_device_cpu_and_auto_without_cuda(no_cuda: None) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda_fails_clearly(no_cuda: None, name: str) -> None:
    with pytest.raises(ArchcompressError) as info:
        resolve_device(name)
    message = str(info.value)
    assert f"--device {name}" in message and "no CUDA GPU" in message and "--device cpu" in message


def test_resolve_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "CPU", ""])
def test_resolve_device_unknown_name(name: str) -> None:
    with pytest.raises(ArchcompressError) as info:
        resolve_device(name)
    assert f"unknown device {name!r}" in str(info.value)
    assert "auto, cpu, cuda" in str(info.value)


def test_atomic_open_writes_through_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_open(target) as handle:
        handle.write(b"new contents")
        handle.flush()
        # Until the block ends the target still holds the old bytes; the new ones are in a hidden .tmp beside it.
        assert target.read_bytes() == b"old"
        others = [p for p in tmp_path.iterdir() if p != target]
        assert len(others) == 1
        assert others[0].name.startswith(".out.bin.") and others[0].name.endswith(".tmp")
        assert others[0].read_bytes() == b"new contents"
    assert target.read_bytes() == b"new contents"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_atomic_open_failure_keeps_the_old_file_and_cleans_up(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(error)), atomic_open(target, "w") as handle:
        handle.write("half")
        raise error
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_open_failure_without_a_previous_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "fresh.txt"
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_creates_parent_folders_and_text_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "note.txt"
    with atomic_open(target, "w") as handle:
        handle.write("hello\n")
    assert target.read_text() == "hello\n"
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["note.txt"]
