"""GPU shares for executor workers, tested with CUDA mocked (no GPU needed): which worker sees which GPU, what each
Ray task asks for, and the one-line errors when GPUs are asked for but missing."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest
import torch

from archcompress.data import load_dataset
from archcompress.errors import ArchcompressError
from archcompress.evaluate import executors, worker
from archcompress.evaluate.executors import (
    ProcessExecutor,
    gpu_slots,
    make_executor,
    ray_task_resources,
    shares_gpus,
    visible_gpus,
)
from archcompress.runtime import torch_threads
from cli_helpers import assert_one_line_error, invoke


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch reports two CUDA GPUs (nothing here touches them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize(
    ("workers", "per_gpu", "gpus", "expected"),
    [
        (1, 1, ["0"], ["0"]),
        (4, 4, ["0"], ["0"] * 4),
        (4, 2, ["0", "1"], ["0", "0", "1", "1"]),
        (3, 2, ["5", "7"], ["5", "5", "7"]),  # ids as CUDA_VISIBLE_DEVICES lists them
        (2, 8, ["0", "1"], ["0", "0"]),  # fewer workers than shares: the first GPU
    ],
)
def test_gpu_slots_fill_each_gpu_with_workers_per_gpu_workers(
    workers: int, per_gpu: int, gpus: list[str], expected: list[str]
) -> None:
    assert gpu_slots(workers, per_gpu, gpus) == expected


def test_gpu_slots_refuse_more_workers_than_the_gpus_take() -> None:
    with pytest.raises(ArchcompressError) as info:
        gpu_slots(5, 2, ["0", "1"])
    message = str(info.value)
    assert "--workers 5 at --workers-per-gpu 2 needs 3 GPUs but 2 are visible" in message
    assert "raise --workers-per-gpu" in message


def test_gpu_slots_refuse_no_gpus_and_zero_shares() -> None:
    with pytest.raises(ArchcompressError, match="torch sees no CUDA GPU: use --device cpu"):
        gpu_slots(1, 1, [])
    with pytest.raises(ArchcompressError, match="--workers-per-gpu must be at least 1, got 0"):
        gpu_slots(1, 0, ["0"])


def test_visible_gpus_follow_cuda_visible_devices(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert visible_gpus() == ["3", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_which_devices_share_gpus(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shares_gpus("cuda") and shares_gpus("auto")
    assert not shares_gpus("cpu") and not shares_gpus("cuda:1")  # cuda:1 names the one GPU all workers use
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not shares_gpus("auto")


@pytest.mark.parametrize(("per_gpu", "share"), [(1, 1.0), (2, 0.5), (4, 0.25), (8, 0.125)])
def test_ray_tasks_ask_for_their_gpu_share(per_gpu: int, share: float) -> None:
    assert ray_task_resources("cuda", per_gpu) == {"num_cpus": 1, "num_gpus": share}


def test_ray_tasks_on_cpu_ask_for_no_gpu(no_cuda: None) -> None:
    assert ray_task_resources("cpu", 4) == {"num_cpus": 1}
    assert ray_task_resources("auto", 4) == {"num_cpus": 1}


def test_the_process_worker_initializer_takes_one_gpu_before_cuda_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    slots: queue.Queue[str] = queue.Queue()
    slots.put("1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with torch_threads(1):
        executors._init_process_worker(1, slots)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert slots.empty()


def test_the_process_executor_assigns_gpus_by_workers_per_gpu(two_gpus: None) -> None:
    assert ProcessExecutor(4, device="cuda", workers_per_gpu=2).gpus == ["0", "0", "1", "1"]
    assert ProcessExecutor(2, device="cpu").gpus is None
    with pytest.raises(ArchcompressError, match="needs 3 GPUs but 2 are visible"):
        ProcessExecutor(5, device="cuda", workers_per_gpu=2)


# Runs in a pool worker (pickled as a call of the built-in eval): stays busy long enough that the other worker
# takes the next task, then says which process it was and which GPU it was given.
WHO_AM_I = "(__import__('time').sleep(2), __import__('os').getpid(), __import__('os').environ['CUDA_VISIBLE_DEVICES'])"


def test_each_process_worker_sees_its_own_gpu(two_gpus: None) -> None:
    executor = ProcessExecutor(2, threads_per_worker=1, device="cuda", workers_per_gpu=1)
    try:
        pool = executor._get_pool()
        seen: dict[int, str] = {}
        for _ in range(3):  # two workers, each busy for 2 s: the two tasks of a round run in different workers
            for future in [pool.submit(eval, WHO_AM_I) for _ in range(2)]:
                _, pid, gpu = future.result(timeout=120)
                seen[pid] = gpu
            if len(seen) == 2:
                break
    finally:
        executor.close()
    assert sorted(seen.values()) == ["0", "1"]


def test_make_executor_refuses_bad_gpu_settings(two_gpus: None) -> None:
    with pytest.raises(ArchcompressError, match="--workers-per-gpu must be at least 1, got 0"):
        make_executor("inline", workers_per_gpu=0)
    with pytest.raises(ArchcompressError, match="Ray chooses each task's GPU: use --device cuda"):
        make_executor("ray", 2, device="cuda:1")


@pytest.mark.slow  # starts a local Ray (~10 s)
def test_the_ray_executor_refuses_cuda_on_a_ray_without_gpus(no_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    with pytest.raises(ArchcompressError) as info:
        make_executor("ray", 1, device="cuda")
    assert "--device cuda was requested but this machine's Ray has no GPUs" in str(info.value)
    import ray

    assert not ray.is_initialized()  # the local Ray it started was shut down again


def test_a_gpu_worker_holds_its_data_and_logits_on_the_device_once() -> None:
    """``meta`` stands in for a GPU: the split's samples, labels and normalisation move, batches come from there."""
    splits = load_dataset("digits")
    moved = worker._on_device(splits.train, torch.device("meta"))
    assert isinstance(moved, worker._DeviceTensorSplit)
    assert moved.raw.device.type == "meta" and moved.targets.device.type == "meta"
    batch = next(iter(moved.batches(16, shuffle=True, device="meta")))
    assert batch.x.device.type == "meta" and batch.x.shape == (16, *splits.info.input_shape)
    assert batch.sample_index.device.type == "cpu"  # indexes the teacher logits, wherever they are
    assert worker._on_device(moved, torch.device("meta")) is moved  # already there: not copied again
    assert worker._on_device(splits.train, torch.device("cpu")) is splits.train


def test_compress_with_cuda_but_no_gpu_is_one_line(tiny_teacher: Path, tmp_path: Path, no_cuda: None) -> None:
    result = invoke(["compress", tiny_teacher, "--out", tmp_path / "run", "--device", "cuda"])
    assert_one_line_error(result, "--device cuda", "no CUDA GPU", "--device cpu")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "words"), [("--workers-per-gpu", "--workers-per-gpu must be at least 1, got 0"),
                                             ("--threads", "--threads must be at least 1")])  # fmt: skip
def test_compress_refuses_zero_workers_per_gpu_and_zero_threads(
    tiny_teacher: Path, tmp_path: Path, flag: str, words: str
) -> None:
    result = invoke(["compress", tiny_teacher, "--out", tmp_path / "run", flag, "0"])
    assert_one_line_error(result, words)
