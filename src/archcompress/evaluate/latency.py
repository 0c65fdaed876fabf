"""CPU inference latency of a module, the size measure of ``--objective latency``.

Measured with PyTorch on one CPU thread at batch 1 (the edge-device case), median over repeats after a
warm-up. Single-threaded timings are far steadier than multi-threaded ones when several evaluations run
side by side; the report's onnxruntime timings (batch 1 and 64) are a separate, deployment-side figure.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from archcompress.runtime import torch_threads

LATENCY_REPEATS = 15
LATENCY_WARMUP = 3


def measure_latency_ms(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch: int = 1,
    repeats: int = LATENCY_REPEATS,
    warmup: int = LATENCY_WARMUP,
) -> float:
    """Median milliseconds of one forward pass of ``module`` on CPU at ``batch``, one thread."""
    was_training = module.training
    device = next(iter(module.parameters()), torch.empty(0)).device
    module = module.cpu().eval()
    try:
        example = torch.randn(batch, *input_shape)
        timings = []
        with torch_threads(1), torch.inference_mode():
            for index in range(warmup + repeats):
                started = time.perf_counter()
                module(example)
                if index >= warmup:
                    timings.append((time.perf_counter() - started) * 1000.0)
    finally:
        module.to(device).train(was_training)
    return statistics.median(timings)
