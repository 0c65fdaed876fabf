"""The ``prune`` baseline: L1 structured channel pruning of the teacher with Torch-Pruning, to a parameter count.

Every prunable layer loses the same fraction of its output channels (a uniform, not global, ratio), keeping
the channels whose output filters have the largest L1 norm (Li et al. 2017, "Pruning Filters for Efficient
ConvNets"). Channels that Torch-Pruning's dependency graph couples (a residual addition, a depthwise conv and
its producer) are pruned together, ranked by the sum of the L1 norms of all the filters that produce them.
The classifier's outputs are never pruned. The ratio is found by bisection on the real parameter count, each
try pruning a fresh copy of the teacher.

A pruned network keeps the teacher's class but not its layer widths, so it cannot be rebuilt from the
teacher's constructor. :func:`to_student` copies it, weights included, into the project's plain ``Student``
(the same module every search method produces), which ``save_student``/``load_student`` store as
``arch.json`` + ``model.pt`` and reload without the teacher's code (and with ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from archcompress.errors import ArchcompressError
from archcompress.space import CompressionSpace, Student, count_params, load_student, measure_macs, save_student
from archcompress.space.util import eval_mode

log = logging.getLogger("archcompress")

_PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)  # Torch-Pruning's root layer types (tp.ops.TORCH_CONV, _LINEAR)


@dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and its size."""

    module: nn.Module  # the teacher's class with fewer channels; in the teacher's train/eval mode
    params: int
    macs: int  # per sample, counted like ``archcompress.space.measure_macs``
    ratio: float  # fraction of the output channels removed from every pruned layer
    input_shape: tuple[int, ...]  # per sample, e.g. (1, 28, 28)


def kept_channels(channels: int, ratio: float) -> int:
    """Channels a layer of ``channels`` keeps when pruned by ``ratio``: rounded half up, at least one."""
    return max(1, min(channels, math.floor(channels * (1.0 - ratio) + 0.5)))


def classifier_layer(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """The last Conv/Linear layer the forward pass runs (its outputs are the logits)."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda module, args, out: order.append(module))
        for m in model.modules()
        if isinstance(m, _PRUNABLE)
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise ArchcompressError(
            f"{type(model).__name__} runs no Conv or Linear layer on its forward pass: there is nothing to prune"
        )
    return order[-1]


def filter_l1(group: Any, graph: Any) -> torch.Tensor:
    """Per channel of a Torch-Pruning group: the summed L1 norm of the Conv/Linear filters that produce it.

    Only output-channel pruning of weighted layers counts (the layers consuming the channels do not), so for
    a plain conv this is the L1 norm of each of its filters. Returns ``(channels,)`` float64.
    """
    score = torch.zeros(len(group[0].idxs), dtype=torch.float64)
    for item in group:
        layer, handler = item.dep.target.module, item.dep.handler
        if not isinstance(layer, _PRUNABLE) or not graph.is_out_channel_pruning_fn(handler):
            continue
        weight = layer.weight.detach()
        if getattr(layer, "transposed", False):
            weight = weight.transpose(0, 1)  # ConvTranspose stores (in, out, ...)
        norms = weight[item.idxs].flatten(1).abs().sum(1).double().cpu()  # (len(idxs),)
        score.index_add_(0, torch.as_tensor(item.root_idxs, dtype=torch.long), norms)
    return score


def prune_channels(
    model: nn.Module, example_input: torch.Tensor, ratio: float, *, ignored: Sequence[nn.Module] | None = None
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of every prunable layer's output channels removed (lowest L1 first).

    Args:
        example_input: a batch for tracing, e.g. ``torch.zeros(1, *input_shape)``, on the model's device.
        ratio: in [0, 1); each layer keeps :func:`kept_channels` of its channels.
        ignored: modules of ``model`` whose output channels stay (default: the classifier).
    """
    if not 0.0 <= ratio < 1.0:
        raise ArchcompressError(f"the pruning ratio must be in [0, 1), got {ratio}")
    return _Pruner(model, example_input, ignored).prune(ratio)


def prune_to_params(
    model: nn.Module,
    example_input: torch.Tensor,
    target_params: int,
    *,
    ignored: Sequence[nn.Module] | None = None,
    tolerance: float = 0.02,
    max_ratio: float = 0.99,
) -> PruneResult:
    """Prune a copy of ``model`` uniformly (L1) so that its parameter count lands within ``tolerance`` of target.

    Parameter counts move in steps (whole channels), so when no ratio lands within the tolerance the closest
    count is returned (with a warning). The model itself is not changed.

    Args:
        example_input: a batch for tracing, e.g. ``torch.zeros(1, *input_shape)``, on the model's device.
        target_params: wanted parameter count, e.g. ``teacher_params // 100`` for 100x.
        ignored: modules of ``model`` whose output channels stay (default: the final classifier layer).
        tolerance: accepted relative distance ``|params - target| / target``.
        max_ratio: the most channels any layer may lose; a target below that size raises.

    Raises:
        ArchcompressError: the target is not below the model's size, or not reachable within ``max_ratio``.
    """
    if not 0.0 < max_ratio < 1.0:
        raise ArchcompressError(f"max_ratio must be in (0, 1), got {max_ratio}")
    full = count_params(model)
    if target_params < 1:
        raise ArchcompressError(f"target_params must be a positive parameter count, got {target_params}")
    if target_params > full * (1.0 + tolerance):
        raise ArchcompressError(
            f"cannot prune to {target_params:,} parameters: the model has only {full:,}; ask for fewer parameters"
        )
    pruner = _Pruner(model, example_input, ignored)

    def close(params: int) -> bool:
        return abs(params - target_params) <= tolerance * target_params

    if close(full):
        return pruner.result(copy.deepcopy(model), 0.0)
    search = _RatioSearch(pruner, max_ratio)
    smallest = search.params(0)
    if smallest > target_params and not close(smallest):
        raise ArchcompressError(
            f"cannot prune to {target_params:,} parameters ({full / target_params:.0f}x fewer): removing "
            f"{max_ratio:.0%} of every layer's channels still leaves {smallest:,} ({full / smallest:.0f}x fewer); "
            f"ask for at least {smallest:,} parameters"
        )
    # bracket: params(low) <= target < params(high) over the ratio steps, smallest network at step 0
    low, high = 0, search.unpruned
    interpolate = True
    while high - low > 1 and not (close(search.params(low)) or close(search.params(high))):
        width = high - low
        guess = search.interpolate(low, high, target_params) if interpolate else (low + high) // 2
        if close(search.params(guess)):
            low = high = guess
            break
        if search.params(guess) <= target_params:
            low = guess
        else:
            high = guess
        search.forget(keep=(low, high))
        interpolate = high - low <= width // 2  # a secant step that does not halve the bracket: bisect next
    best = min(sorted({low, high}), key=lambda s: abs(search.params(s) - target_params))
    module = search.module(best)
    result = pruner.result(module, search.ratio(best))
    if not close(result.params):
        log.warning(
            "pruning reaches %d parameters, not within %.0f%% of the %d asked for (the closest channel count)",
            result.params,
            100 * tolerance,
            target_params,
        )
    return result


class _Pruner:
    """Prunes fresh copies of one model; remembers the group widths so a ratio's network is known beforehand."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, ignored: Sequence[nn.Module] | None) -> None:
        self.model = model
        self.example_input = example_input
        self.input_shape = tuple(int(d) for d in example_input.shape[1:])
        names = {id(m): name for name, m in model.named_modules()}
        chosen = list(ignored) if ignored is not None else [classifier_layer(model, example_input)]
        missing = [type(m).__name__ for m in chosen if id(m) not in names]
        if missing:
            raise ArchcompressError(f"ignored layers {missing} are not submodules of the model being pruned")
        self.ignored_names = [names[id(m)] for m in chosen]
        self.widths: list[int] | None = None  # channels per prunable group, filled by the first prune

    def prune(self, ratio: float) -> nn.Module:
        """A pruned deep copy; the same ratio always gives the same network."""
        pruned = copy.deepcopy(self.model)
        with eval_mode(pruned), _grad_enabled(pruned):  # tracing must not update BN statistics
            expected = _output_shape(pruned, self.example_input)
            ignored = [m for name in self.ignored_names for m in pruned.get_submodule(name).modules()]
            _refuse_grouped_convs(pruned, ignored)
            graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=self.example_input)
            groups = list(graph.get_all_groups(ignored_layers=ignored, root_module_types=list(_PRUNABLE)))
            self.widths = [len(group[0].idxs) for group in groups]
            # rank every group on the unpruned weights before any surgery changes filter shapes
            plans = [(group, filter_l1(group, graph)) for group in groups]
            for group, score in plans:
                keep = kept_channels(len(score), ratio)
                if keep == len(score):
                    continue
                order = torch.argsort(score, descending=True, stable=True)
                drop = sorted(order[keep:].tolist())
                root = group[0].dep
                graph.get_pruning_group(root.target.module, root.handler, drop).prune()
            actual = _output_shape(pruned, self.example_input)
        if actual != expected:
            raise ArchcompressError(
                f"pruning changed the output shape from {expected} to {actual}: pass the layer that produces the "
                "logits in `ignored`"
            )
        return pruned

    def result(self, module: nn.Module, ratio: float) -> PruneResult:
        return PruneResult(
            module, count_params(module), measure_macs(module, self.input_shape), ratio, self.input_shape
        )


class _RatioSearch:
    """The distinct networks uniform pruning can give (one per step of the kept-channel counts), cached.

    Step ``i`` is the network of ``ratio(i)``: step 0 is the smallest (``max_ratio``), parameter counts grow
    with the step, and step ``unpruned`` is the model itself.
    """

    def __init__(self, pruner: _Pruner, max_ratio: float) -> None:
        self.pruner = pruner
        self._modules: dict[int, nn.Module] = {}
        self._params: dict[int, int] = {}
        smallest = pruner.prune(max_ratio)  # also records the group widths
        assert pruner.widths is not None
        lowest = 1.0 - max_ratio
        # kept(C, k) = max(1, floor(C k + 1/2)) changes at k = (j - 1/2) / C: one network per interval of k
        edges = sorted({(j - 0.5) / c for c in set(pruner.widths) for j in range(2, c + 1)})
        inside = [e for e in edges if lowest < e < 1.0]
        # the keep fraction in the middle of each interval, away from the rounding edges; above the last edge
        # every layer keeps all its channels: that is the unpruned model
        self.steps = [max_ratio] + [1.0 - (a + b) / 2 for a, b in itertools.pairwise(inside)]
        self.unpruned = len(self.steps)
        self._modules[0], self._params[0] = smallest, count_params(smallest)
        self._params[self.unpruned] = count_params(pruner.model)

    def ratio(self, step: int) -> float:
        return self.steps[step] if step < self.unpruned else 0.0

    def module(self, step: int) -> nn.Module:
        if step not in self._modules:
            if step == self.unpruned:
                self._modules[step] = copy.deepcopy(self.pruner.model)
            else:
                self._modules[step] = self.pruner.prune(self.steps[step])
            self._params[step] = count_params(self._modules[step])
        return self._modules[step]

    def params(self, step: int) -> int:
        if step not in self._params:
            self.module(step)
        return self._params[step]

    def forget(self, keep: tuple[int, ...]) -> None:
        """Drop the pruned copies outside ``keep`` (their parameter counts stay cached)."""
        self._modules = {s: m for s, m in self._modules.items() if s in keep}

    def interpolate(self, low: int, high: int, target: int) -> int:
        """The step strictly inside (low, high) whose keep fraction a secant on sqrt(params) points to.

        sqrt(params) is close to linear in the kept fraction (most weights sit between two pruned layers).
        """
        low_root, high_root = math.sqrt(self.params(low)), math.sqrt(self.params(high))
        keep_low, keep_high = 1.0 - self.ratio(low), 1.0 - self.ratio(high)
        fraction = (math.sqrt(target) - low_root) / max(high_root - low_root, 1e-12)
        keep = keep_low + (keep_high - keep_low) * min(max(fraction, 0.0), 1.0)
        return min(range(low + 1, high), key=lambda s: abs((1.0 - self.steps[s]) - keep))


def _output_shape(model: nn.Module, example_input: torch.Tensor) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(model(example_input).shape)


@contextlib.contextmanager
def _grad_enabled(model: nn.Module) -> Iterator[None]:
    """Make every parameter require grad for the block (Torch-Pruning traces the autograd graph), then restore.

    Flags are restored by name: pruning replaces the pruned layers' parameters with new ones.
    """
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(True)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, True))


def _refuse_grouped_convs(model: nn.Module, ignored: Sequence[nn.Module]) -> None:
    """Uniform channel pruning cannot keep a grouped conv's groups equal; depthwise convs are fine."""
    for name, m in model.named_modules():
        depthwise = isinstance(m, nn.modules.conv._ConvNd) and m.groups == m.in_channels == m.out_channels
        if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and not depthwise and m not in ignored:
            raise ArchcompressError(
                f"layer {name!r} is a grouped convolution ({m.groups} groups), which L1 channel pruning does "
                "not support: pass it in `ignored`"
            )


# --- saving ------------------------------------------------------------------------------------------


def to_student(module: nn.Module, input_shape: Sequence[int]) -> Student:
    """Copy a pruned network, weights and batch-norm statistics included, into a plain :class:`Student`.

    The copy is checked to compute the same outputs. Raises ``ArchcompressError`` if the network cannot be
    traced by the compression space (the same requirement every teacher meets).
    """
    shape = tuple(int(d) for d in input_shape)
    space = CompressionSpace.from_model(module, shape, min_channels=1)
    student = space.build(space.teacher_candidate(), inherit=True).module
    device = next(module.parameters()).device
    student.to(device)
    probe = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    with eval_mode(module), eval_mode(student), torch.no_grad():
        expected, actual = module(probe), student(probe)
    if not torch.allclose(expected, actual, rtol=1e-4, atol=1e-5):
        raise ArchcompressError(
            "the rebuilt student does not compute the same outputs as the pruned network "
            f"(max difference {(expected - actual).abs().max().item():.3g}); please report this model"
        )
    return student.train(module.training)


def save_pruned(
    module: nn.Module,
    directory: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> Path:
    """Save a pruned network as a student (``arch.json`` + ``model.pt``); read it back with :func:`load_pruned`.

    ``module`` is a :class:`Student` (saved as is) or a pruned network, which then needs ``input_shape``.
    """
    if not isinstance(module, Student):
        if input_shape is None:
            raise ArchcompressError(
                f"saving a pruned {type(module).__name__} needs its input_shape (per sample, e.g. (1, 28, 28))"
            )
        module = to_student(module, input_shape)
    return save_student(module, directory, {"method": "prune", **dict(metadata or {})})


def load_pruned(directory: str | os.PathLike[str]) -> Student:
    """Load a student written by :func:`save_pruned` (the same as ``archcompress.load_student``), in eval mode."""
    return load_student(directory)
