"""Executors run evaluation jobs: ``inline`` (this process), ``process`` (a local pool), ``ray`` (a cluster).

All share one interface, ``run(context, jobs)``, yielding ``(job index, outcome)`` as jobs finish. A worker
that crashes or is killed fails only its own task, which is retried once; the search goes on.

With ``--device cuda`` (or ``auto`` on a machine with a GPU) each worker gets its share of a GPU:
``workers_per_gpu`` workers share one (``process``: each worker process sees one GPU through
``CUDA_VISIBLE_DEVICES``; ``ray``: each task asks Ray for ``num_gpus=1/workers_per_gpu``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import torch

from archcompress.errors import ArchcompressError, first_line
from archcompress.evaluate.worker import (
    EvalContext,
    EvalOutcome,
    preload_logits,
    run_job,
    training_logits,
    worker_state,
)

Job = tuple[dict[str, Any], int, int]  # (candidate dict, seed, rung)
EXECUTORS = ("inline", "process", "ray")
MAX_ATTEMPTS = 2  # a task whose worker dies is retried once


def shares_gpus(device: str) -> bool:
    """Whether workers of ``device`` should each be given a GPU share (``cuda`` or ``auto`` with CUDA present).

    ``cuda:N`` names one GPU: every worker uses that one.
    """
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (ids or UUIDs)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def gpu_slots(workers: int, workers_per_gpu: int, gpus: Sequence[str]) -> list[str]:
    """The GPU of each worker: workers 0..k-1 share the first GPU, the next k the second, and so on."""
    if workers_per_gpu < 1:
        raise ArchcompressError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    if not gpus:
        raise ArchcompressError("--device cuda was requested but torch sees no CUDA GPU: use --device cpu (or auto)")
    if workers > len(gpus) * workers_per_gpu:
        raise ArchcompressError(
            f"--workers {workers} at --workers-per-gpu {workers_per_gpu} needs "
            f"{-(-workers // workers_per_gpu)} GPUs but {len(gpus)} are visible: raise --workers-per-gpu or "
            "lower --workers"
        )
    return [gpus[index // workers_per_gpu] for index in range(workers)]


def ray_task_resources(device: str, workers_per_gpu: int) -> dict[str, float]:
    """What each Ray evaluation task asks for: one CPU, and ``1 / workers_per_gpu`` of a GPU on CUDA."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return {"num_cpus": 1, "num_gpus": 1 / workers_per_gpu}
    return {"num_cpus": 1}


class Executor(Protocol):
    """Runs evaluation jobs and yields ``(job index, outcome)`` in completion order.

    ``jobs`` may grow while the iteration runs (a promotion decided on a result just yielded): jobs appended
    to it are run too, as soon as a worker is free.
    """

    name: str

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]: ...

    def close(self) -> None: ...


def safe_run_job(
    context: EvalContext, candidate: dict[str, Any], seed: int, logits: Any = None, rung: int = 0
) -> EvalOutcome:
    """``run_job`` that turns an unexpected error into a failed outcome instead of losing the worker."""
    try:
        return run_job(context, candidate, seed, logits, rung)
    except Exception as exc:  # a bug or bad input in one evaluation must not stop the search
        return EvalOutcome(status=f"failed: {type(exc).__name__}: {first_line(exc)}")


class InlineExecutor:
    """Evaluate in the calling process, one job after another (deterministic; easiest to debug)."""

    name = "inline"

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]:
        index = 0
        while index < len(jobs):  # not enumerate: jobs appended during the iteration run too
            candidate, seed, rung = jobs[index]
            yield index, safe_run_job(context, candidate, seed, rung=rung)
            index += 1

    def close(self) -> None:
        pass


def _init_process_worker(threads: int, gpus: Any = None, logits: tuple[str, torch.Tensor] | None = None) -> None:
    """Set up one pool worker; ``gpus`` (a queue of GPU ids) hands each worker its GPU before CUDA starts, and
    ``logits`` (fingerprint, the teacher's training logits in shared memory) spares it reading them from disk."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get(timeout=60)  # "cuda" is now this worker's share
    if logits is not None:
        preload_logits(*logits)
    torch.set_num_threads(threads)  # so that N workers on N cores do not oversubscribe them
    # A terminal's Ctrl-C reaches the whole process group: only the parent handles it (it stops the pool), so
    # workers do not die one by one with KeyboardInterrupt tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _shared_logits(context: EvalContext) -> tuple[str, torch.Tensor] | None:
    """The teacher's training logits of ``context`` (from this process's set-up) in shared memory, or None when
    the teacher runs live (augmentation)."""
    if context.budget.augment:
        return None
    state = worker_state(context)
    logits = training_logits(context, state.teacher, state.splits, torch.device("cpu"))
    return context.fingerprint(), logits.share_memory_()  # workers map these pages instead of copying them


class ProcessExecutor:
    """A local pool of worker processes; each loads teacher, data and logits once and keeps them."""

    name = "process"

    def __init__(
        self,
        workers: int,
        threads_per_worker: int | None = None,
        *,
        device: str = "cpu",
        workers_per_gpu: int = 1,
        start_method: str | None = None,
    ) -> None:
        """``start_method`` (``fork`` or ``spawn``) overrides the choice of :meth:`can_fork` (for tests)."""
        if workers < 1:
            raise ArchcompressError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        # the GPU of each worker (None: CPU, or the one GPU that ``cuda:N`` names)
        self.gpus = gpu_slots(workers, workers_per_gpu, visible_gpus()) if shares_gpus(device) else None
        self.device = device
        self._pool: ProcessPoolExecutor | None = None
        self.forced_start_method = start_method
        self.start_method: str | None = None  # how the current pool's workers were started

    def can_fork(self, eval_context: EvalContext | None) -> bool:
        """Whether workers may be forked from this process: they then start in milliseconds with its imports and
        its set-up (teacher, data, space, logits) already in memory, instead of seconds per worker.

        Only for single-threaded CPU workers: a forked child that runs torch's OpenMP pool with more than one
        thread after its parent used it hangs (the pool's threads do not survive ``fork``), and CUDA cannot be
        used after ``fork`` at all. Everything else spawns fresh interpreters.
        """
        if eval_context is None:  # nothing to set up here for the workers to inherit
            return False
        on_cpu = self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available())
        single_threaded = self.threads == 1 and eval_context.threads in (None, 1)
        return (
            on_cpu
            and single_threaded
            and not torch.cuda.is_initialized()
            and "fork" in multiprocessing.get_all_start_methods()
        )

    def _get_pool(self, eval_context: EvalContext | None = None) -> ProcessPoolExecutor:
        """The pool, started on first use; its workers get ``eval_context``'s teacher logits in shared memory (a
        later context of another teacher or budget is set up from the disk cache, as before)."""
        if self._pool is None:
            self.start_method = self.forced_start_method or ("fork" if self.can_fork(eval_context) else "spawn")
            context = multiprocessing.get_context(self.start_method)
            slots = None
            if self.gpus is not None:  # each worker process the pool starts takes one GPU id
                slots = context.Queue()
                for gpu in self.gpus:
                    slots.put(gpu)
            shared = None
            if eval_context is not None and self.start_method == "fork":
                worker_state(eval_context)  # set up here once: forked workers inherit it, logits included
            elif eval_context is not None:
                shared = _shared_logits(eval_context)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_process_worker,
                initargs=(self.threads, slots, shared),
            )
        return self._pool

    def _discard_pool(self) -> None:
        if self._pool is not None:
            workers = list((self._pool._processes or {}).values())  # no public handle on them before Python 3.14
            self._pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:  # abandon evaluations still running (after Ctrl-C): their results are not wanted
                worker.terminate()
            self._pool = None

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]:
        deaths = [0] * len(jobs)
        pending = deque(range(len(jobs)))
        # A worker died (killed, out of memory, segfault): the broken pool fails every task in flight without
        # saying whose worker it was. Those tasks are retried one at a time, so that a death is only ever
        # charged to a task that ran alone, and a task that kills its worker cannot take the others with it.
        alone: deque[int] = deque()
        in_flight: dict[Future[EvalOutcome], tuple[int, bool]] = {}
        queued = len(jobs)

        def submit(index: int, ran_alone: bool) -> None:
            candidate, seed, rung = jobs[index]
            future = self._get_pool(context).submit(safe_run_job, context, candidate, seed, None, rung)
            in_flight[future] = (index, ran_alone)

        while pending or alone or in_flight:
            if alone:
                if not in_flight:
                    submit(alone.popleft(), True)
            else:
                while pending:
                    submit(pending.popleft(), False)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                index, ran_alone = in_flight.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    self._discard_pool()
                    deaths[index] += 1
                    if ran_alone and deaths[index] >= MAX_ATTEMPTS:
                        yield index, EvalOutcome(status=f"failed: worker died twice ({first_line(exc)})")
                    else:
                        alone.append(index)
                    continue
                yield index, outcome
                if len(jobs) > queued:  # appended while we yielded
                    pending.extend(range(queued, len(jobs)))
                    queued = len(jobs)

    def close(self) -> None:
        self._discard_pool()


def _ray_job(
    context: EvalContext, candidate: dict[str, Any], seed: int, logits: Any, threads: int, rung: int
) -> EvalOutcome:
    torch.set_num_threads(threads)
    return safe_run_job(context, candidate, seed, logits, rung)


class RayExecutor:
    """Ray tasks on a local Ray (started on demand) or an existing cluster (``address``).

    The context and the teacher's training logits are put in Ray's object store once per ``run`` and
    shared by all tasks; Ray retries a task once when its worker dies.
    """

    name = "ray"

    def __init__(
        self,
        workers: int,
        address: str | None = None,
        threads_per_worker: int = 1,
        *,
        device: str = "cpu",
        workers_per_gpu: int = 1,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ArchcompressError(
                "the ray executor needs Ray: pip install 'archcompress[ray]' (or use --executor process)"
            ) from exc
        self._ray = ray
        self.workers = workers
        self.threads = threads_per_worker
        self._started_here = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            except Exception as exc:
                target = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise ArchcompressError(f"could not connect to {target} ({first_line(exc)})") from exc
            self._started_here = True
        resources = ray_task_resources(device, workers_per_gpu)
        if resources.get("num_gpus") and not ray.cluster_resources().get("GPU"):
            self.close()
            where = f"the Ray cluster at {address}" if address else "this machine's Ray"
            raise ArchcompressError(
                f"--device {device} was requested but {where} has no GPUs: use --device cpu, or start the Ray "
                "nodes on GPU machines"
            )
        gpus = resources.get("num_gpus", 0)
        self._remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=MAX_ATTEMPTS - 1)(_ray_job)
        self._shared: dict[str, tuple[Any, Any]] = {}

    def run(self, context: EvalContext, jobs: Sequence[Job]) -> Iterator[tuple[int, EvalOutcome]]:
        ray = self._ray

        key = context.fingerprint()
        if key not in self._shared:  # put in the object store once, shared by every task of every batch
            # Workers take the whole training split's logits and apply ``budget.subset`` themselves, so the
            # (possibly subset) targets of this process's own set-up must not be sent.
            state = worker_state(context)
            logits = None
            if not context.budget.augment:
                logits = training_logits(context, state.teacher, state.splits, state.device)
            self._shared[key] = (ray.put(context), ray.put(logits))
        context_ref, logits_ref = self._shared[key]
        refs: dict[Any, int] = {}
        queued = 0
        while refs or queued < len(jobs):
            for index in range(queued, len(jobs)):  # the first jobs, and those appended while we yielded
                candidate, seed, rung = jobs[index]
                refs[self._remote.remote(context_ref, candidate, seed, logits_ref, self.threads, rung)] = index
            queued = len(jobs)
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                index = refs.pop(ref)
                try:
                    yield index, ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield index, EvalOutcome(status=f"failed: ray task lost twice ({first_line(exc)})")

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(
    name: str,
    workers: int = 1,
    ray_address: str | None = None,
    threads_per_worker: int | None = None,
    *,
    device: str = "cpu",
    workers_per_gpu: int = 1,
) -> Executor:
    """Create an executor by name; on CUDA, ``workers_per_gpu`` workers share each GPU."""
    if workers_per_gpu < 1:
        raise ArchcompressError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(workers, threads_per_worker, device=device, workers_per_gpu=workers_per_gpu)
    if name == "ray":
        if device.startswith("cuda:"):
            raise ArchcompressError(
                f"--device {device} names one GPU of this machine, but Ray chooses each task's GPU: use --device cuda"
            )
        return RayExecutor(
            workers, ray_address, threads_per_worker or 1, device=device, workers_per_gpu=workers_per_gpu
        )
    raise ArchcompressError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")
