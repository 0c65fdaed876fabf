"""Process-level helpers: seeding, device selection, thread counts, atomic file writes."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from archcompress.errors import ArchcompressError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs with the same seed give the same result."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Map ``auto|cpu|cuda[:N]`` to a torch device, failing clearly when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ArchcompressError(
                f"--device {name} was requested but torch sees no CUDA GPU: use --device cpu (or auto)"
            )
        return torch.device(name)
    raise ArchcompressError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)} or cuda:N")


# A student needs about this many multiply-accumulates per sample before a second intra-op thread pays for
# itself. Below it, each op is too small to split: extra threads mostly spin, and on contended cores they cost
# far more than they save (measured: a 3k-parameter 1-D CNN, one epoch, 45 s with 2 threads vs 0.3 s with 1 while
# other work shared the 2 cores). benchmarks/parallel.py measures both ends on this machine.
MACS_PER_THREAD = 4_000_000


def threads_for_student(macs: int, available: int, override: int | None = None) -> int:
    """Torch intra-op threads for training one student of ``macs`` multiply-accumulates per sample.

    One thread for tiny students, one more per ``MACS_PER_THREAD``, never more than ``available`` (the threads
    this process was given); ``override`` (the ``--threads`` setting) wins when set.
    """
    if override is not None:
        if override < 1:
            raise ArchcompressError(f"--threads must be at least 1, got {override}")
        return override
    return max(1, min(max(1, available), macs // MACS_PER_THREAD))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_home() -> Path:
    """Where shared caches live (teacher logits, the shared result store): ``$ARCHCOMPRESS_HOME`` or
    ``~/.cache/archcompress``."""
    return Path(os.environ.get("ARCHCOMPRESS_HOME") or Path.home() / ".cache" / "archcompress")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it over ``path`` only if the block succeeds.

    Readers therefore see either the old file or the complete new one, never a torn write.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):  # e.g. ENOSPC: the disk filled up while writing
            raise ArchcompressError(
                f"cannot write {target} ({exc.strerror or exc}): free some disk space or check the permissions "
                f"(any earlier {target.name} is unchanged)"
            ) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
