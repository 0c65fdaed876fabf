"""Model references: a zoo name, ``torchvision:NAME``, ``timm:NAME`` (optional ``timm`` package),
``path/to/file.py:Factory`` or ``package.module:Factory``.

A reference plus constructor keyword arguments, the input shape and the class count is enough to rebuild a
model; checkpoints store exactly those.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archcompress.errors import ArchcompressError, first_line, unknown_name_error
from archcompress.models.registry import check_input_rank, zoo_entry

TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"


def reference_kind(ref: str) -> str:
    """Classify a reference as ``zoo``, ``torchvision``, ``timm``, ``file`` or ``module``."""
    if ref.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if ref.startswith(TIMM_PREFIX):
        return "timm"
    if ":" in ref:
        path = ref.rsplit(":", 1)[0]
        return "file" if path.endswith(".py") or "/" in path or "\\" in path else "module"
    return "zoo"


def create_model(
    ref: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """Build a freshly initialised model from its reference (no weights are ever downloaded)."""
    kwargs = dict(kwargs or {})
    kind = reference_kind(ref)
    input_shape = tuple(int(d) for d in input_shape)
    if kind == "zoo":
        entry = zoo_entry(ref)
        check_input_rank(entry, input_shape)
        return _call_factory(entry.factory, ref, input_shape, num_classes, kwargs)
    if kind == "torchvision":
        return _torchvision_model(ref[len(TORCHVISION_PREFIX) :], input_shape, num_classes, kwargs)
    if kind == "timm":
        return _timm_model(ref[len(TIMM_PREFIX) :], input_shape, num_classes, kwargs)
    return _call_factory(_load_user_factory(ref, kind), ref, input_shape, num_classes, kwargs)


def _call_factory(
    factory: Callable[..., Any],
    ref: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    kwargs: dict[str, Any],
) -> nn.Module:
    """Call a factory with the standard arguments it accepts plus the user's keyword arguments."""
    try:
        params: Mapping[str, inspect.Parameter] = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        accepted = [n for n in params if n not in ("input_shape", "num_classes", "in_channels")]
        raise ArchcompressError(
            f"model {ref!r} does not take argument(s) {', '.join(unknown)}: "
            f"it accepts {', '.join(accepted) or 'no extra arguments'}"
        )
    standard = {"input_shape": input_shape, "num_classes": num_classes, "in_channels": input_shape[0]}
    call_kwargs = {k: v for k, v in standard.items() if k in params or takes_any}
    call_kwargs.update(kwargs)
    try:
        model = factory(**call_kwargs)
    except ArchcompressError:
        raise
    except Exception as exc:
        raise ArchcompressError(
            f"model factory {ref!r} failed with {type(exc).__name__}: {exc} (arguments: {call_kwargs})"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ArchcompressError(
            f"model factory {ref!r} returned {type(model).__name__}, not a torch.nn.Module: "
            "make the factory return the model instance"
        )
    return model


def _load_user_factory(ref: str, kind: str) -> Callable[..., Any]:
    location, attribute = ref.rsplit(":", 1)
    if kind == "file":
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise ArchcompressError(f"model file {location!r} does not exist: check the path in {ref!r}")
        # A stable, path-derived module name so the same file is imported once per process.
        module_name = "archcompress_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ArchcompressError(f"cannot import {location!r}: it is not a Python source file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise ArchcompressError(
                    f"importing model file {location!r} failed with {type(exc).__name__}: {exc}: "
                    "fix the file so that `python FILE` runs"
                ) from exc
    else:
        try:
            module = importlib.import_module(location)
        except Exception as exc:
            raise ArchcompressError(
                f"cannot import module {location!r} for model {ref!r} ({type(exc).__name__}: {exc}): "
                "check the module is installed or on PYTHONPATH"
            ) from exc
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        callables = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise unknown_name_error(
            f"factory in {location!r}", attribute, callables, hint=f"callables there: {', '.join(callables)}"
        )
    return factory


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's image classification models."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_model(name: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    names = torchvision_classifiers()
    if name not in names:
        raise unknown_name_error("torchvision classification model", name, names)
    if len(input_shape) != 3:
        raise ArchcompressError(
            f"torchvision:{name} needs an image input (C, H, W) but the input shape is {input_shape}"
        )
    kwargs.pop("weights", None)  # never download weights
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ArchcompressError(f"torchvision:{name} rejected its arguments {kwargs}: {exc}") from exc
    if input_shape[0] != 3:
        _adapt_first_conv(model, input_shape[0])
    return model


def _timm_model(name: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    """A randomly initialised timm model (``pretrained`` is forced off: nothing is downloaded)."""
    try:
        import timm
    except ImportError as exc:
        raise ArchcompressError(
            f"timm:{name} needs the optional package timm: pip install 'archcompress[timm]'"
        ) from exc
    if not timm.is_model(name):
        raise unknown_name_error("timm model", name, timm.list_models(), hint="list them with timm.list_models()")
    if len(input_shape) != 3:
        raise ArchcompressError(f"timm:{name} needs an image input (C, H, W) but the input shape is {input_shape}")
    for key in ("pretrained", "pretrained_cfg_overlay", "checkpoint_path"):
        kwargs.pop(key, None)  # never download or load weights
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **kwargs)
    except TypeError as exc:
        raise ArchcompressError(f"timm:{name} rejected its arguments {kwargs}: {exc}") from exc


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel Conv2d so that torchvision's RGB models accept other channel counts."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            replacement = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,  # type: ignore[arg-type]
                stride=module.stride,  # type: ignore[arg-type]
                padding=module.padding,  # type: ignore[arg-type]
                dilation=module.dilation,  # type: ignore[arg-type]
                groups=module.groups,
                bias=module.bias is not None,
            )
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
            return


def check_model_io(model: nn.Module, ref: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Run one dummy forward pass: the model must accept ``input_shape`` and give ``num_classes`` logits."""
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=device))
    except Exception as exc:
        raise ArchcompressError(
            f"model {ref!r} cannot take inputs of shape {tuple(input_shape)} "
            f"({type(exc).__name__}: {first_line(exc)}): "
            "pick a data set or --input-shape that the model supports"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ArchcompressError(
            f"model {ref!r} outputs {shape} for a batch of 2 but the data set has {num_classes} classes: "
            f"the model must return logits of shape (batch, {num_classes})"
        )
