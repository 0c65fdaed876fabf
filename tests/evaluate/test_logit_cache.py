"""The teacher-logit cache: computed once per teacher and split, then read by every later set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from archcompress.checkpoint import load_teacher
from archcompress.data import load_dataset
from archcompress.distill import predict_logits, teacher_targets
from archcompress.evaluate import Budget, EvalContext, worker, worker_state

CHILD = """
import json, sys
import archcompress.distill.teacher_targets as targets
from archcompress.data import DataOptions
from archcompress.evaluate import Budget, EvalContext, worker, worker_state

def teacher_must_not_run(*args, **kwargs):
    raise AssertionError("the teacher ran although its logits are cached")

targets.predict_logits = teacher_must_not_run
fields = json.loads(sys.argv[1])
context = EvalContext(**fields, data=DataOptions(), budget=Budget(epochs=1), device="cpu")
print(json.dumps({"rows": len(worker_state(context).targets.logits)}))
"""


def test_teacher_logits_are_computed_once_then_read_from_disk(
    make_context: Callable[..., EvalContext], home: Path, teacher_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = teacher_targets.predict_logits

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_targets, "predict_logits", counting)
    logits_dir = home / "logits"
    assert not logits_dir.exists()

    first = worker_state(make_context(Budget(epochs=1, subset=200)))
    assert len(calls) == 1
    files = list(logits_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("logits-") and files[0].suffix == ".pt"
    cached = torch.load(files[0], weights_only=True)
    splits = load_dataset("digits")
    assert cached.shape == (len(splits.train), 10)
    expected = predict_logits(load_teacher(teacher_path).model, splits.train, torch.device("cpu"))
    assert torch.equal(cached, expected)
    # the candidate subset (class-stratified, about 200 samples) gets the rows of its samples
    _, index = worker._subset(splits.train, 200)
    assert abs(len(index) - 200) <= 10 and len(first.train) == len(index)
    assert torch.equal(first.targets.logits, cached[index])  # type: ignore[attr-defined]

    # Another set-up in this process (another budget: another worker state, the same split) reads the file.
    mtime = files[0].stat().st_mtime_ns
    second = worker_state(make_context(Budget(epochs=1)))
    assert second is not first
    assert len(calls) == 1
    assert torch.equal(second.targets.logits, cached)  # type: ignore[attr-defined]

    # A fresh process (a new worker) sets up without running the teacher at all.
    context = make_context()
    fields = {k: getattr(context, k) for k in ("teacher_path", "teacher_sha256", "dataset", "cache_dir")}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(fields)],
        capture_output=True,
        text=True,
        env={**os.environ, "ARCHCOMPRESS_HOME": str(home)},
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.splitlines()[-1]) == {"rows": len(splits.train)}
    assert [f.name for f in logits_dir.iterdir()] == [files[0].name]  # no second file, no temporary left
    assert files[0].stat().st_mtime_ns == mtime


def test_a_damaged_logit_file_is_recomputed(
    make_context: Callable[..., EvalContext], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker_state(make_context(Budget(epochs=1, subset=100)))
    (path,) = (home / "logits").iterdir()
    good = torch.load(path, weights_only=True)
    path.write_bytes(b"not a tensor")
    calls: list[int] = []
    real = teacher_targets.predict_logits

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_targets, "predict_logits", counting)
    state = worker_state(make_context(Budget(epochs=1)))
    assert len(calls) == 1
    assert torch.equal(state.targets.logits, good)  # type: ignore[attr-defined]
    assert torch.equal(torch.load(path, weights_only=True), good)
