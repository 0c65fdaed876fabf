"""The compression pipeline: run-directory lifecycle, search, final choice and distillation, report."""

from archcompress.pipeline.run import CompressionResult, completed_run, run_compression
from archcompress.pipeline.search import SearchStatus

__all__ = ["CompressionResult", "SearchStatus", "completed_run", "run_compression"]
