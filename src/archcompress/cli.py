"""Command-line interface: each command declares its options and calls one api function."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.core
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from archcompress.errors import ArchcompressError
from archcompress.version import __version__

app = typer.Typer(
    name="archcompress",
    help="Find a much smaller student architecture for a trained CNN (N2N learning, architecture compression).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _flags_take_no_value() -> None:
    """Typer's rich help shows a flag's type (``<bool>``) as if the flag took a value: show nothing instead."""
    original = typer.core.TyperOption.display_type_rich

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()


def stdout_console() -> Console:
    """A console for this invocation's output, at the terminal's width now (not at import)."""
    return Console()


def stderr_console() -> Console:
    """A console for this invocation's errors, warnings and progress bars."""
    return Console(stderr=True)


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(command: F) -> F:
    """Turn our errors into one line on stderr and exit code 2 (130 on Ctrl-C); ``--debug`` shows tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ArchcompressError as exc:
            if _debug():
                raise
            # One line, printed verbatim: wrapped library messages may span lines or contain [markup].
            message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stderr_console().print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class ConsoleWarnings(logging.Handler):
    """While in its ``with`` block, shows the warnings a run logs for the user (``extra={"console": True}``)."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or stderr_console()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "console", False):
            self.console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)

    def __enter__(self) -> ConsoleWarnings:
        logging.getLogger("archcompress").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("archcompress").removeHandler(self)


_DEBUG: ContextVar[bool] = ContextVar("archcompress_debug", default=False)


def _debug() -> bool:
    return _DEBUG.get()


def _version(value: bool) -> None:
    if value:
        stdout_console().print(f"archcompress {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """archcompress: teacher in, smaller trained student out."""
    _DEBUG.set(debug)


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` options; values are read as YAML scalars (``0.25``, ``true``, ``[1, 2]``)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ArchcompressError(f"--model-arg {item!r} is not KEY=VALUE: write it like --model-arg width=0.5")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or type(exc).__name__
            raise ArchcompressError(f"--model-arg {item!r}: cannot parse the value ({reason})") from exc
    return parsed


@app.command()
@handle_errors
def datasets() -> None:
    """List the data sets, with a one-line description each."""
    from archcompress.data import dataset_sources

    table = Table("name", "description", "needs --data-root", box=None)
    for source in dataset_sources():
        table.add_row(source.name, source.description, "yes" if source.needs_root else "no")
    table.add_row(
        "imagefolder:PATH",
        "any folder of class sub-folders: PATH/train/<class>/*.jpg, optional test/ or val/",
        "no",
    )
    stdout_console().print(table)


@app.command()
@handle_errors
def models() -> None:
    """List the teacher zoo and the other accepted model references."""
    from archcompress.models import torchvision_classifiers, zoo_entries

    table = Table("reference", "description", box=None)
    for entry in zoo_entries():
        table.add_row(entry.name, entry.description)
    table.add_row(
        "torchvision:NAME",
        f"any of torchvision's {len(torchvision_classifiers())} classification models, random init "
        "(e.g. torchvision:resnet50, torchvision:mobilenet_v2)",
    )
    table.add_row("timm:NAME", "any timm model, random init, nothing downloaded (needs the optional timm package)")
    table.add_row("path/to/file.py:Factory", "your own model: Factory(num_classes=..., input_shape=...) -> nn.Module")
    table.add_row("package.module:Factory", "the same, from an importable module")
    stdout_console().print(table)
    stdout_console().print("Zoo models take --model-arg width=FLOAT to scale every layer's width.")


@app.command("train-teacher")
@handle_errors
def train_teacher_command(
    model: Annotated[str, typer.Option(help="Model reference (see `archcompress models`).")],
    dataset: Annotated[str, typer.Option(help="Data set name (see `archcompress datasets`).")],
    out: Annotated[Path, typer.Option(help="Where to write the teacher checkpoint (.pt).")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    model_arg: Annotated[
        list[str] | None,
        typer.Option("--model-arg", help="Model constructor argument KEY=VALUE (repeatable)."),
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder with torchvision data sets.")] = None,
    download: Annotated[bool, typer.Option(help="Download a torchvision data set into --data-root.")] = False,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training set held out as val.")] = 0.1,
    image_size: Annotated[int, typer.Option(help="Image size for imagefolder:PATH data sets.")] = 224,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd (Nesterov momentum) or adam.")] = "sgd",
    lr: Annotated[
        float | None, typer.Option(help=escape("Learning rate [default: 0.05 for sgd, 0.001 for adam]."))
    ] = None,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (not applied to biases and norms).")] = 5e-4,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule: cosine, step or none.")] = "cosine",
    augment: Annotated[bool, typer.Option(help="Train-time augmentation (shifts, flips where sensible).")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same result on CPU).")] = 0,
    workers: Annotated[int, typer.Option(help="Data loading processes (for data decoded from files).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Train a teacher from scratch and save a checkpoint that later commands read."""
    from archcompress.api import train_teacher
    from archcompress.data import DataOptions
    from archcompress.distill import TrainConfig
    from archcompress.progress import TrainingProgress

    train = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,  # type: ignore[arg-type]
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,  # type: ignore[arg-type]
        augment=augment,
        seed=seed,
    )
    data = DataOptions(
        data_root=data_root,
        download=download,
        val_fraction=val_fraction,
        image_size=image_size,
        workers=workers,
    )
    with ConsoleWarnings():  # e.g. a model the compression space will refuse, said before training starts
        result = train_teacher(
            model,
            dataset,
            out,
            model_kwargs=parse_model_args(model_arg or []),
            data=data,
            train=train,
            device=device,
            overwrite=overwrite,
            callbacks=(TrainingProgress(f"{model} on {dataset}", stderr_console()),),
        )
    meta = result.meta
    stdout_console().print(
        f"teacher {meta.model} on {meta.dataset}: test accuracy {meta.test_accuracy:.2%}, "
        f"val accuracy {meta.val_accuracy:.2%}, {meta.params:,} params, {result.seconds:.0f}s"
    )
    stdout_console().print(f"checkpoint written to {result.path}")
    if meta.test_accuracy is not None and meta.test_accuracy < 1.5 / meta.num_classes:
        stderr_console().print(
            f"[yellow]warning:[/] test accuracy {meta.test_accuracy:.2%} is near chance "
            f"({1 / meta.num_classes:.2%}): train longer (--epochs) or change --lr before compressing this teacher"
        )


def parse_ratios(text: str) -> tuple[float, ...]:
    """Parse ``0.1,0.25,0.5,1`` into a tuple of ratios in (0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v <= 1 for v in values):
        raise ArchcompressError(f"--ratios {text!r} must be comma-separated numbers in (0, 1], e.g. 0.1,0.25,0.5,1")
    return values


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``C,H,W`` (or ``C,L``) into a tuple of positive ints."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not 2 <= len(shape) <= 3 or min(shape) < 1:
        raise ArchcompressError(f"--input-shape {text!r} is not C,H,W or C,L with positive sizes: e.g. 3,32,32")
    return shape


@app.command()
@handle_errors
def inspect(
    model: Annotated[str, typer.Argument(help="A teacher checkpoint (.pt) or a model reference.")],
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W (or C,L) per sample; needed for a model reference.")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help=escape("Classes, for a model reference [default: 10]."))
    ] = None,
    model_arg: Annotated[
        list[str] | None, typer.Option("--model-arg", help="Model constructor argument KEY=VALUE (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Show the compression space of a model: units, shapes, params, MACs, removable, shrink group."""
    import json

    from archcompress.api import inspect_model
    from archcompress.space import render_summary

    shape = parse_shape(input_shape) if input_shape else None
    summary = inspect_model(model, shape, num_classes, parse_model_args(model_arg or []))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        stdout_console().print(render_summary(summary, title=model))


# Each compress flag -> the setting path it sets (see archcompress.pipeline.settings). Defaults shown in --help come
# from the options dataclasses through this table, so there is one source of defaults; a flag left out is not
# a change (that is what lets --resume and --config tell what the user asked for).
COMPRESS_FLAGS: dict[str, str] = {
    "dataset": "dataset", "method": "method", "budget": "budget", "target": "target", "max_params": "max_params",
    "max_macs": "max_macs", "max_latency_ms": "max_latency_ms", "min_accuracy": "min_accuracy",
    "preset": "preset", "epochs": "candidate.epochs", "rungs": "candidate.rungs", "promote": "promote",
    "subset": "candidate.subset", "loss": "candidate.loss",
    "final_epochs": "final_epochs", "final_loss": "final_loss", "finalists": "finalists",
    "finalist_epochs": "finalist_epochs",
    "executor": "executor", "workers": "workers", "ray_address": "ray_address", "workers_per_gpu": "workers_per_gpu",
    "threads": "threads",
    "store": "store", "uniform_depth": "uniform.depth", "data_root": "data.data_root", "device": "device",
    "seed": "seed", "rollouts": "n2n.rollouts", "stage1_share": "n2n.stage1_share",
    "stage1_width": "n2n.stage1_width", "stage2_bases": "n2n.stage2_bases", "stall_updates": "n2n.stall_updates",
    "fit_to_limit": "n2n.fit_to_limit",
    "reward": "n2n.reward", "objective": "n2n.objective", "constraint": "n2n.constraint", "policy": "n2n.policy",
    "transfer_temperature": "n2n.transfer_temperature", "transfer_anneal": "n2n.transfer_anneal",
    "transfer_reset": "n2n.transfer_reset", "transfer_keep": "n2n.transfer_keep", "policy_features": "n2n.features",
    "seed_candidates": "embedding.seed_candidates", "fitted_seeds": "embedding.fitted_seeds",
    "round_size": "embedding.batch_size",
    "embedding_objective": "embedding.objective", "size_weight": "embedding.size_weight",
    "ascent_steps": "embedding.ascent_steps", "step_size": "embedding.step_size",
    "trust_radius": "embedding.trust_radius", "codec": "embedding.codec", "ratios": "space.ratios",
    "min_channels": "space.min_channels", "removable": "space.removable", "keep_pooling": "space.removable",
    "kernel_ratios": "space.kernel_ratios",
}  # fmt: skip


@functools.cache
def _defaults() -> dict[str, Any]:
    """The default config of each preset (built once, for --help)."""
    from archcompress.config import PRESETS, CompressConfig

    return {preset: CompressConfig.create("TEACHER", "OUT", preset=preset) for preset in PRESETS}


def _default_text(path: str) -> str:
    from archcompress.pipeline.settings import get_setting

    values = {preset: get_setting(config, path) for preset, config in _defaults().items()}
    fast, paper = values["fast"], values["paper"]

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, tuple):
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
        if isinstance(value, float):
            return f"{value:.4g}"
        return "none" if value is None else str(value)

    return text(fast) if fast == paper else f"{text(fast)}; paper preset: {text(paper)}"


def opt(text: str, name: str, *flags: str) -> Any:
    """A compress option whose help ends with its default, read from the options dataclasses."""
    default = "off" if name == "keep_pooling" else _default_text(COMPRESS_FLAGS[name])
    return typer.Option(*flags, help=escape(f"{text} [default: {default}]"), show_default=False)


def _method_help() -> str:
    from archcompress.methods import get_method, method_names

    return "; ".join(f"{name}: {get_method(name).summary}" for name in method_names()) + "."


def _compress_changes(given: dict[str, Any]) -> dict[str, Any]:
    """The settings the user changed, by path, from the flags given (converted to the settings' types)."""
    from archcompress.config import parse_target
    from archcompress.evaluate.budget import parse_rungs
    from archcompress.space.options import DEFAULT_REMOVABLE, parse_removable

    if "removable" in given and "keep_pooling" in given:
        raise ArchcompressError("give --removable without max-pool instead of adding --keep-pooling to it")
    convert: dict[str, Callable[[Any], Any]] = {
        "target": parse_target, "ratios": parse_ratios, "kernel_ratios": parse_ratios,
        "removable": parse_removable, "rungs": parse_rungs,
        "keep_pooling": lambda keep: tuple(k for k in DEFAULT_REMOVABLE if not (keep and k == "max-pool")),
        "store": str, "policy": str, "codec": str,
    }  # fmt: skip
    return {COMPRESS_FLAGS[name]: convert.get(name, lambda v: v)(value) for name, value in given.items()}


def _notes_for_other_methods(method: str, given: dict[str, Any]) -> list[str]:
    """A note for each flag given that only another method reads."""
    from archcompress.methods import get_method, method_names

    notes = []
    mine = set(get_method(method).own_flags)
    for name in given:
        flag = name.replace("_", "-")
        owners = [m for m in method_names() if flag in get_method(m).own_flags]
        if owners and flag not in mine:
            notes.append(f"--{flag} applies to --method {' / '.join(owners)} only: ignored by --method {method}")
    return notes


@app.command()
@handle_errors
def compress(
    teacher: Annotated[str | None, typer.Argument(help="Teacher checkpoint written by train-teacher.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory to create (new or empty; never overwritten).")] = None,
    dataset: Annotated[str | None, opt("Data set (none: the teacher's).", "dataset")] = None,
    method: Annotated[str | None, opt(_method_help(), "method")] = None,
    budget: Annotated[int | None, opt("Number of distinct candidates to evaluate.", "budget")] = None,
    target: Annotated[str | None, opt("Minimum compression, e.g. 10x (teacher/student params).", "target")] = None,
    max_params: Annotated[int | None, opt("The student's parameter limit.", "max_params")] = None,
    max_macs: Annotated[int | None, opt("The student's limit of multiply-accumulates per sample.", "max_macs")] = None,
    max_latency_ms: Annotated[
        float | None, opt("The student's CPU latency limit at batch 1, in milliseconds.", "max_latency_ms")
    ] = None,
    min_accuracy: Annotated[float | None, opt("The student's minimum val accuracy (0-1).", "min_accuracy")] = None,
    preset: Annotated[
        str | None, opt("fast (inherited weights, short training) or paper (the N2N code's settings).", "preset")
    ] = None,
    epochs: Annotated[
        int | None, opt("Distillation epochs per candidate (given alone: one fidelity, no --rungs).", "epochs")
    ] = None,
    rungs: Annotated[
        str | None,
        opt(
            "Multi-fidelity: epochs after which candidates are scored, e.g. 1,3,9 (one run, its schedule spanning "
            "the last); the best --promote share of each rung trains on to the next; none: --epochs once.",
            "rungs",
        ),
    ] = None,
    promote: Annotated[
        float | None, opt("With --rungs: the share of each rung's candidates promoted to the next.", "promote")
    ] = None,
    subset: Annotated[int | None, opt("Train candidates on this many samples only (none: all).", "subset")] = None,
    loss: Annotated[str | None, opt("Distillation loss: l2 (N2N) or kd (Hinton).", "loss")] = None,
    final_epochs: Annotated[int | None, opt("Distillation epochs for the chosen student.", "final_epochs")] = None,
    final_loss: Annotated[
        str | None, opt("The chosen student's distillation loss: l2, kd or candidate (as --loss).", "final_loss")
    ] = None,
    finalists: Annotated[
        int | None,
        opt(
            "Train this many of the best candidates that meet the constraints again, for --finalist-epochs, and "
            "distil the best by val accuracy (0: the best reward).",
            "finalists",
        ),
    ] = None,
    finalist_epochs: Annotated[int | None, opt("Distillation epochs of each finalist.", "finalist_epochs")] = None,
    executor: Annotated[str | None, opt("inline, process or ray.", "executor")] = None,
    workers: Annotated[int | None, opt("Parallel evaluations (process/ray executors).", "workers")] = None,
    ray_address: Annotated[str | None, opt("Join this Ray cluster instead of a local Ray.", "ray_address")] = None,
    workers_per_gpu: Annotated[
        int | None,
        opt("With --device cuda: evaluations that share one GPU (process/ray executors).", "workers_per_gpu"),
    ] = None,
    threads: Annotated[
        int | None, opt("Torch threads per evaluation (none: 1 for small students, more for large).", "threads")
    ] = None,
    store: Annotated[Path | None, opt("A result store shared between runs and methods.", "store")] = None,
    uniform_depth: Annotated[
        bool | None, opt("uniform: also cut depth uniformly, crossed with widths.", "uniform_depth")
    ] = None,
    data_root: Annotated[Path | None, opt("Folder with torchvision data sets.", "data_root")] = None,
    device: Annotated[str | None, opt("auto, cpu or cuda.", "device")] = None,
    seed: Annotated[int | None, opt("Random seed.", "seed")] = None,
    rollouts: Annotated[int | None, opt("n2n: rollouts per policy update.", "rollouts")] = None,
    stage1_share: Annotated[float | None, opt("n2n: share of --budget for stage 1 (removal).", "stage1_share")] = None,
    stage1_width: Annotated[
        str | None,
        opt("n2n: stage 1 at the widest width meeting the limits (target), median or full.", "stage1_width"),
    ] = None,
    stage2_bases: Annotated[
        int | None, opt("n2n: shrink the best this many stage-1 architectures.", "stage2_bases")
    ] = None,
    fit_to_limit: Annotated[
        bool | None,
        opt(
            "n2n: stage-2 proposals over the parameter limit get their widest layers narrowed until they fit.",
            "fit_to_limit",
        ),
    ] = None,
    stall_updates: Annotated[
        int | None,
        opt("n2n: a stage has converged after this many updates with nothing new (0: off).", "stall_updates"),
    ] = None,
    reward: Annotated[str | None, opt("n2n: paper (C(2-C)) or log (log-scale compression).", "reward")] = None,
    objective: Annotated[
        str | None, opt("n2n: what C measures: params, macs or latency (CPU, batch 1).", "objective")
    ] = None,
    constraint: Annotated[
        str | None, opt("n2n: a constraint violation costs soft (annealed penalty) or hard (-1).", "constraint")
    ] = None,
    policy: Annotated[Path | None, opt("n2n: start from the policies/ of an earlier run.", "policy")] = None,
    transfer_temperature: Annotated[
        float | None,
        opt("n2n with --policy: the loaded policies' starting softmax temperature.", "transfer_temperature"),
    ] = None,
    transfer_anneal: Annotated[
        int | None, opt("n2n with --policy: updates over which the temperature falls to 1.", "transfer_anneal")
    ] = None,
    transfer_reset: Annotated[
        str | None,
        opt("n2n with --policy: none, or shrink-head (re-initialise the width choices).", "transfer_reset"),
    ] = None,
    transfer_keep: Annotated[
        str | None,
        opt("n2n with --policy: keep the share of units it learnt (share) or as many (count).", "transfer_keep"),
    ] = None,
    policy_features: Annotated[
        str | None,
        opt("n2n: unit features the policies read, absolute or relative to the teacher.", "policy_features"),
    ] = None,
    seed_candidates: Annotated[
        int | None, opt("embedding: evaluated candidates before the first round.", "seed_candidates")
    ] = None,
    fitted_seeds: Annotated[
        float | None,
        opt("embedding: share of seed candidates that are random removals at the target's width.", "fitted_seeds"),
    ] = None,
    round_size: Annotated[int | None, opt("embedding: new candidates per round.", "round_size")] = None,
    embedding_objective: Annotated[
        str | None, opt("embedding: linear (acc - lambda*ln params) or n2n (N2N reward).", "embedding_objective")
    ] = None,
    size_weight: Annotated[
        float | None, opt("embedding: lambda, accuracy traded per e-fold of size.", "size_weight")
    ] = None,
    ascent_steps: Annotated[int | None, opt("embedding: gradient steps per ascent path.", "ascent_steps")] = None,
    step_size: Annotated[
        float | None, opt("embedding: step, as a share of the typical embedding norm.", "step_size")
    ] = None,
    trust_radius: Annotated[
        float | None, opt("embedding: farthest distance from the start, as a share of the norm.", "trust_radius")
    ] = None,
    codec: Annotated[Path | None, opt("embedding: start from the codec/ of an earlier run.", "codec")] = None,
    ratios: Annotated[str | None, opt("Width ratios to choose from, e.g. 0.05,0.1,0.25,0.5,1.", "ratios")] = None,
    kernel_ratios: Annotated[
        str | None,
        opt(
            "Kernel-size ratios for plain convs, e.g. 0.34,1 (3x3 may become 1x1); none: kernels stay.", "kernel_ratios"
        ),
    ] = None,
    min_channels: Annotated[
        int | None, opt("A shrunk layer keeps at least this many channels.", "min_channels")
    ] = None,
    removable: Annotated[
        str | None,
        opt(
            "Kinds of unit a search may remove, a comma list of block, body, max-pool, avg-pool, linear "
            "(hidden fully connected layers), strided-conv (an average pooling keeps its downsampling); or none.",
            "removable",
        ),
    ] = None,
    keep_pooling: Annotated[
        bool | None,
        opt("Never remove max-pooling layers (the default --removable without max-pool).", "keep_pooling"),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from where it stopped.")] = False,
    config: Annotated[
        Path | None, typer.Option(help="Repeat a run from its config.yaml (flags given override it).")
    ] = None,
) -> None:
    """Search for a smaller student, distil it, test it once, and write the run directory."""
    from archcompress.api import compress as run
    from archcompress.progress import SearchProgress

    given = {name: value for name, value in locals().items() if name in COMPRESS_FLAGS and value is not None}
    changes = _compress_changes(given)
    labels = {COMPRESS_FLAGS[name]: "--" + name.replace("_", "-") for name in COMPRESS_FLAGS}
    stdout, stderr = Console(), Console(stderr=True)
    with ConsoleWarnings(stderr):
        from archcompress.pipeline.settings import resolve_settings

        settings, _ = resolve_settings(teacher=teacher, out=out, changes=changes, resume=resume, config_file=config,
                                       labels=labels)  # fmt: skip
        for note in _notes_for_other_methods(settings.method, given):
            stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        with SearchProgress(f"{settings.method} search", settings.budget, stderr) as bar:

            def on_progress(status: Any) -> None:
                best = status.best
                if best is not None and best.params:
                    ratio = status.teacher_params / best.params
                    text = f"best {best.val_accuracy:.2%} val at {ratio:.1f}x (reward {status.best_reward:.3f})"
                elif status.best_any is not None and status.constraints.any:
                    text = "no candidate meets the constraints yet"
                else:
                    text = "no student trained yet"
                bar.update(status.done, text)

            outcome = run(teacher, out, resume=resume, config=config, on_progress=on_progress, labels=labels,
                          settings=changes)  # fmt: skip
    report = outcome.report
    if outcome.already_complete:
        stdout.print(f"run {outcome.run_dir} is already complete: nothing to do (raise --budget to search further)")
    student, teacher_info = report["student"], report["teacher"]
    macs = report["compression"]["macs"]
    macs_text = f"{macs:.1f}x fewer MACs" if macs >= 1 else f"{1 / macs:.1f}x more MACs"
    stdout.print(
        f"student: test accuracy {student['test_accuracy']:.2%} (teacher {teacher_info['test_accuracy']:.2%}), "
        f"{student['params']:,} params ({report['compression']['params']:.1f}x fewer), {macs_text}",
        soft_wrap=True,
    )
    missed = [c["name"] for c in report.get("constraints", []) if c.get("met") is False]
    if missed:
        stderr.print(f"[yellow]warning:[/] the student misses the constraint(s): {', '.join(missed)}")
    stdout.print(f"run directory: {outcome.run_dir}  (student in {outcome.run_dir / 'student'})", soft_wrap=True)
    stdout.print(f"report: {outcome.run_dir / 'report.html'}", soft_wrap=True)


@app.command()
@handle_errors
def evaluate(
    teacher: Annotated[str, typer.Argument(help="Teacher checkpoint written by train-teacher.")],
    candidate: Annotated[Path, typer.Option(help="Candidate JSON file (keep, ratios, kernel_ratios).")],
    dataset: Annotated[str | None, typer.Option(help=escape("Data set [default: the teacher's]."))] = None,
    epochs: Annotated[int | None, opt("Distillation epochs.", "epochs")] = None,
    loss: Annotated[str | None, opt("Distillation loss: l2 or kd.", "loss")] = None,
    preset: Annotated[str, opt("fast or paper: the candidate training budget.", "preset")] = "fast",
    store: Annotated[
        Path | None, typer.Option(help=escape("Result store [default: the shared one in the cache]."))
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder with torchvision data sets.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Distil and score one candidate student (results are stored: a second call costs no training)."""
    from dataclasses import replace

    from archcompress.api import evaluate_candidate
    from archcompress.data import DataOptions

    try:
        text = candidate.read_text()
    except OSError as exc:
        raise ArchcompressError(f"cannot read --candidate {candidate} ({exc}): check the path") from exc
    from archcompress.config import PRESETS, candidate_budget

    if preset not in PRESETS:
        raise ArchcompressError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    budget = candidate_budget(preset)
    budget = replace(
        budget,
        epochs=budget.epochs if epochs is None else epochs,
        loss=loss or budget.loss,  # type: ignore[arg-type]
    )
    result = evaluate_candidate(
        teacher, text, dataset=dataset, budget=budget, data=DataOptions(data_root=data_root), store=store,
        device=device, seed=seed,
    )  # fmt: skip
    accuracy = f"{result.val_accuracy:.2%}" if result.val_accuracy is not None else "-"
    seconds = f"{result.train_seconds:.1f}s" if result.train_seconds is not None else "-"
    stdout_console().print(
        f"candidate {result.candidate_hash}: {result.status}, val accuracy {accuracy}, "
        f"{result.params or 0:,} params, {result.macs or 0:,} MACs, trained in {seconds}"
        + (" (from the store, not retrained)" if result.from_store else "")
    )


@app.command()
@handle_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories written by compress (one or more).")],
    out: Annotated[
        Path | None, typer.Option(help="HTML file to write (default: RUN_DIR/report.html; required for several runs).")
    ] = None,
) -> None:
    """Write one self-contained HTML report (tables, Pareto plot, search curve, layer table) for the runs."""
    from archcompress.report import write_report

    path = write_report(run_dirs, out)
    stdout_console().print(f"report written to {path}")


@app.command()
@handle_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by compress.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")],
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default: RUN_DIR/student/model.onnx or model.torchscript.pt)."),
    ] = None,
) -> None:
    """Export the run's student to ONNX (dynamic batch axis) or TorchScript, checked against PyTorch."""
    from archcompress.export import export_student

    path = export_student(run_dir, fmt, out)
    stdout_console().print(f"student exported to {path}")


GLOBAL_FLAGS = ("--debug",)  # accepted before or after the command name


def run(argv: list[str]) -> Any:
    """Run the CLI on ``argv`` (without the program name); global flags may come anywhere."""
    globals_given = [arg for arg in argv if arg in GLOBAL_FLAGS]
    rest = [arg for arg in argv if arg not in GLOBAL_FLAGS]
    if "--" in argv:  # everything after "--" is an argument, never a flag
        cut = argv.index("--")
        globals_given = [arg for arg in argv[:cut] if arg in GLOBAL_FLAGS]
        rest = [arg for arg in argv[:cut] if arg not in GLOBAL_FLAGS] + argv[cut:]
    return app(args=[*globals_given, *rest], prog_name="archcompress")


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))
