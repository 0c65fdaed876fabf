"""Cost of a network: parameters and MACs, analytic (from the plan) and measured (from a module).

MACs are multiply-accumulates for one sample: a conv counts output elements x in_channels / groups x kernel
area, a linear layer in x out. Bias additions, batch norm, activations, pooling, dropout and residual
additions count 0. The analytic count of a candidate and :func:`measure_macs` of its built module agree
exactly; tests check it for every supported teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archcompress.space.util import eval_mode


@dataclass(frozen=True)
class Cost:
    """Exact size of a network."""

    params: int  # trainable parameters (BN running statistics are buffers and not counted)
    macs: int  # multiply-accumulates per sample


def count_params(module: nn.Module) -> int:
    """``sum(p.numel())`` over the module's parameters."""
    return sum(p.numel() for p in module.parameters())


def measure_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Count MACs of one forward pass of a single sample with forward hooks on conv and linear layers."""
    total = 0

    def conv_hook(m: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv1d | nn.Conv2d)
        total += out[0].numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def linear_hook(m: nn.Module, args: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out[0].numel() * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    device = next(module.parameters(), torch.empty(0)).device
    try:
        with eval_mode(module), torch.no_grad():
            module(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total
