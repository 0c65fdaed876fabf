"""Candidate evaluation: budget, worker, executors (inline, process, ray), the evaluator and its store."""

from archcompress.evaluate.budget import Budget
from archcompress.evaluate.evaluator import Evaluator, Result, dataset_key
from archcompress.evaluate.executors import EXECUTORS, Executor, make_executor
from archcompress.evaluate.store import SCHEMA_VERSION, ResultKey, ResultStore, StoredResult
from archcompress.evaluate.worker import EvalContext, EvalOutcome, SpaceOptions, run_job, worker_state

__all__ = [
    "EXECUTORS",
    "SCHEMA_VERSION",
    "Budget",
    "EvalContext",
    "EvalOutcome",
    "Evaluator",
    "Executor",
    "Result",
    "ResultKey",
    "ResultStore",
    "SpaceOptions",
    "StoredResult",
    "dataset_key",
    "make_executor",
    "run_job",
    "worker_state",
]
