"""Candidate evaluation: the result store (evaluator and executors build on it)."""

from archcompress.evaluate.store import SCHEMA_VERSION, ResultKey, ResultStore, StoredResult

__all__ = ["SCHEMA_VERSION", "ResultKey", "ResultStore", "StoredResult"]
