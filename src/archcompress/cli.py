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
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from archcompress import __version__
from archcompress.errors import ArchcompressError

app = typer.Typer(
    name="archcompress",
    help="Find a much smaller student architecture for a trained CNN (N2N learning, architecture compression).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

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
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class ConsoleWarnings(logging.Handler):
    """While in its ``with`` block, shows the warnings a run logs for the user (``extra={"console": True}``)."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "console", False):
            err_console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)

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
        console.print(f"archcompress {__version__}")
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
    console.print(table)


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
    table.add_row("path/to/file.py:Factory", "your own model: Factory(num_classes=..., input_shape=...) -> nn.Module")
    table.add_row("package.module:Factory", "the same, from an importable module")
    console.print(table)
    console.print("Zoo models take --model-arg width=FLOAT to scale every layer's width.")


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
    lr: Annotated[float | None, typer.Option(help="Learning rate [default: 0.05 for sgd, 0.001 for adam].")] = None,
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
    result = train_teacher(
        model,
        dataset,
        out,
        model_kwargs=parse_model_args(model_arg or []),
        data=data,
        train=train,
        device=device,
        overwrite=overwrite,
        callbacks=(TrainingProgress(f"{model} on {dataset}", err_console),),
    )
    meta = result.meta
    console.print(
        f"teacher {meta.model} on {meta.dataset}: test accuracy {meta.test_accuracy:.2%}, "
        f"val accuracy {meta.val_accuracy:.2%}, {meta.params:,} params, {result.seconds:.0f}s"
    )
    console.print(f"checkpoint written to {result.path}")
    if meta.test_accuracy is not None and meta.test_accuracy < 1.5 / meta.num_classes:
        err_console.print(
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
    num_classes: Annotated[int | None, typer.Option(help="Classes, for a model reference [default: 10].")] = None,
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
        console.print(render_summary(summary, title=model))


@app.command()
@handle_errors
def compress(
    teacher: Annotated[str | None, typer.Argument(help="Teacher checkpoint written by train-teacher.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory to create (never overwritten).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Data set [default: the teacher's].")] = None,
    method: Annotated[
        str, typer.Option(help="n2n, random, uniform (one width multiplier) or prune (L1 channel pruning).")
    ] = "random",
    budget: Annotated[int, typer.Option(help="Number of candidate evaluations.")] = 20,
    target: Annotated[str | None, typer.Option(help="Minimum compression, e.g. 10x (teacher/student params).")] = None,
    preset: Annotated[
        str, typer.Option(help="fast (inherited weights, 2 epochs) or paper (N2N code settings).")
    ] = "fast",
    epochs: Annotated[
        int | None, typer.Option(help="Distillation epochs per candidate [default: from preset].")
    ] = None,
    subset: Annotated[int | None, typer.Option(help="Train candidates on this many samples only.")] = None,
    loss: Annotated[str, typer.Option(help="Distillation loss: l2 (N2N) or kd (Hinton).")] = "l2",
    final_epochs: Annotated[int, typer.Option(help="Distillation epochs for the chosen student.")] = 10,
    executor: Annotated[str, typer.Option(help="inline, process or ray.")] = "inline",
    workers: Annotated[int, typer.Option(help="Parallel evaluations (process/ray executors).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of a local Ray.")] = None,
    store: Annotated[Path | None, typer.Option(help="A result store shared between runs and methods.")] = None,
    uniform_depth: Annotated[
        bool, typer.Option(help="uniform: also cut depth uniformly, crossed with widths.")
    ] = False,
    data_root: Annotated[Path | None, typer.Option(help="Folder with torchvision data sets.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    rollouts: Annotated[int, typer.Option(help="n2n: rollouts per policy update.")] = 5,
    stage1_share: Annotated[float, typer.Option(help="n2n: share of --budget for stage 1 (removal).")] = 0.5,
    stage1_width: Annotated[
        str,
        typer.Option(help="n2n: stage 1 at the widest width meeting --target (else the median ratio), median or full."),
    ] = "target",
    stage2_bases: Annotated[int, typer.Option(help="n2n: shrink the best this many stage-1 architectures.")] = 1,
    stall_updates: Annotated[
        int, typer.Option(help="n2n: a stage has converged after this many updates with no new candidate (0: off).")
    ] = 3,
    reward: Annotated[str, typer.Option(help="n2n: paper (C(2-C)) or log (log-scale compression).")] = "paper",
    objective: Annotated[
        str, typer.Option(help="n2n: what C measures: params, macs or latency (CPU, batch 1).")
    ] = "params",
    constraint: Annotated[str, typer.Option(help="n2n: soft (annealed penalty) or hard (-1).")] = "soft",
    max_params: Annotated[
        int | None, typer.Option(help="Parameter limit for the student (n2n constraint; prune: its size).")
    ] = None,
    max_macs: Annotated[int | None, typer.Option(help="n2n: MAC limit for the student.")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="n2n: minimum val accuracy (0-1).")] = None,
    policy: Annotated[Path | None, typer.Option(help="n2n: start from the policies/ of an earlier run.")] = None,
    seed_candidates: Annotated[
        int, typer.Option(help="embedding: evaluated candidates before the first round (--store results count).")
    ] = 32,
    round_size: Annotated[int, typer.Option(help="embedding: new candidates per round (rounds = rest / this).")] = 8,
    embedding_objective: Annotated[
        str, typer.Option(help="embedding: linear (acc - lambda*ln params) or n2n (N2N reward on predictions).")
    ] = "linear",
    size_weight: Annotated[float, typer.Option(help="embedding: lambda, accuracy traded per e-fold of size.")] = 0.01,
    ascent_steps: Annotated[int, typer.Option(help="embedding: gradient steps per ascent path.")] = 20,
    step_size: Annotated[float, typer.Option(help="embedding: step, as a share of the typical embedding norm.")] = 0.1,
    trust_radius: Annotated[
        float, typer.Option(help="embedding: farthest distance from the start, as a share of the norm.")
    ] = 1.0,
    codec: Annotated[Path | None, typer.Option(help="embedding: start from the codec/ of an earlier run.")] = None,
    ratios: Annotated[str | None, typer.Option(help="Width ratios to choose from, e.g. 0.05,0.1,0.25,0.5,1")] = None,
    min_channels: Annotated[int, typer.Option(help="A shrunk layer keeps at least this many channels.")] = 10,
    keep_pooling: Annotated[
        bool, typer.Option(help="Never remove max-pooling layers (removing one saves no params, adds MACs).")
    ] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from where it stopped.")] = False,
    config: Annotated[Path | None, typer.Option(help="Repeat a run from its config.yaml.")] = None,
) -> None:
    """Search for a smaller student, distil it, test it once, and write the run directory."""
    from dataclasses import replace

    from archcompress.compress import run_compression
    from archcompress.config import CompressConfig, parse_target
    from archcompress.data import DataOptions
    from archcompress.evaluate import Budget, SpaceOptions
    from archcompress.progress import SearchProgress
    from archcompress.search.embedding import EmbeddingOptions
    from archcompress.search.n2n.search import PAPER_SHRINK_LR, N2NOptions

    if resume:
        if out is None:
            raise ArchcompressError("--resume needs --out RUN_DIR: the run directory to continue")
        config_file = out / "config.yaml"
        settings = CompressConfig.from_yaml(config_file, complete=True) if config_file.is_file() else None
        if settings is None:
            raise ArchcompressError(f"--resume {out}: no config.yaml there, so it is not a run directory to continue")
        settings = replace(settings, out=str(out))  # the directory given, even if the run was moved since
    elif config is not None:
        settings = CompressConfig.from_yaml(config)
        if out is not None:
            settings = replace(settings, out=str(out))
    else:
        if teacher is None or out is None:
            raise ArchcompressError("give a TEACHER checkpoint and --out RUN_DIR (or --config / --resume)")
        candidate = Budget.paper() if preset == "paper" else Budget()
        candidate = replace(candidate, loss=loss, subset=subset)  # type: ignore[arg-type]
        if epochs is not None:
            candidate = replace(candidate, epochs=epochs)
        n2n = N2NOptions(
            rollouts=rollouts, stage1_share=stage1_share, stage1_width=stage1_width,  # type: ignore[arg-type]
            stage2_bases=stage2_bases, stall_updates=stall_updates,
            reward=reward, objective=objective,  # type: ignore[arg-type]
            constraint=constraint, max_params=max_params, max_macs=max_macs,  # type: ignore[arg-type]
            min_accuracy=min_accuracy, policy=str(policy) if policy else None,
        )  # fmt: skip
        if preset == "paper":
            n2n = replace(n2n, shrink_lr=PAPER_SHRINK_LR, stage1_width="full")
        embedding = EmbeddingOptions(
            seed_candidates=seed_candidates, batch_size=round_size, objective=embedding_objective,  # type: ignore[arg-type]
            size_weight=size_weight, ascent_steps=ascent_steps, step_size=step_size, trust_radius=trust_radius,
            codec=str(codec) if codec else None,
        )  # fmt: skip
        space = SpaceOptions(min_channels=min_channels, remove_pooling=not keep_pooling)
        if ratios:
            space = replace(space, ratios=parse_ratios(ratios))
        settings = CompressConfig(
            teacher=teacher, out=str(out), dataset=dataset, method=method, budget=budget,
            target=parse_target(target), preset=preset, seed=seed, device=device, executor=executor,
            workers=workers, ray_address=ray_address, final_epochs=final_epochs,
            store=str(store) if store else None, data=DataOptions(data_root=data_root), candidate=candidate,
            space=space, n2n=n2n, uniform_depth=uniform_depth, embedding=embedding,
        )  # fmt: skip
    settings.validate()
    with SearchProgress(f"{settings.method} search", settings.budget, err_console) as bar, ConsoleWarnings():

        def on_progress(status: Any) -> None:
            best = status.best
            text = "no student trained yet"
            if best is not None and best.params:
                ratio = status.teacher_params / best.params
                text = f"best: reward {status.best_reward:.3f}, val {best.val_accuracy:.2%}, {ratio:.1f}x smaller"
            bar.update(status.done, text)

        outcome = run_compression(settings, resume=resume, on_progress=on_progress)
    report = outcome.report
    student, teacher_info = report["student"], report["teacher"]
    macs = report["compression"]["macs"]
    macs_text = f"{macs:.1f}x fewer MACs" if macs >= 1 else f"{1 / macs:.1f}x more MACs"
    console.print(
        f"student: test accuracy {student['test_accuracy']:.2%} (teacher {teacher_info['test_accuracy']:.2%}), "
        f"{student['params']:,} params ({report['compression']['params']:.1f}x fewer), {macs_text}"
    )
    if report["target"]["ratio"] and not report["target"]["met"]:
        err_console.print(f"[yellow]warning:[/] no candidate reached the {report['target']['ratio']:g}x target")
    console.print(f"run directory: {outcome.run_dir}  (student in {outcome.run_dir / 'student'})")
    console.print(f"report: {outcome.run_dir / 'report.html'}")


@app.command()
@handle_errors
def evaluate(
    teacher: Annotated[str, typer.Argument(help="Teacher checkpoint written by train-teacher.")],
    candidate: Annotated[Path, typer.Option(help="Candidate JSON file (keep, ratios, kernel_ratios).")],
    dataset: Annotated[str | None, typer.Option(help="Data set [default: the teacher's].")] = None,
    epochs: Annotated[int, typer.Option(help="Distillation epochs.")] = 2,
    loss: Annotated[str, typer.Option(help="l2 or kd.")] = "l2",
    preset: Annotated[str, typer.Option(help="fast or paper.")] = "fast",
    store: Annotated[Path | None, typer.Option(help="Result store [default: the shared one in the cache].")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Folder with torchvision data sets.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Distil and score one candidate student (results are stored: a second call costs no training)."""
    from dataclasses import replace

    from archcompress.api import evaluate_candidate
    from archcompress.data import DataOptions
    from archcompress.evaluate import Budget

    try:
        text = candidate.read_text()
    except OSError as exc:
        raise ArchcompressError(f"cannot read --candidate {candidate} ({exc}): check the path") from exc
    budget = replace(Budget.paper() if preset == "paper" else Budget(), epochs=epochs, loss=loss)  # type: ignore[arg-type]
    result = evaluate_candidate(
        teacher, text, dataset=dataset, budget=budget, data=DataOptions(data_root=data_root), store=store,
        device=device, seed=seed,
    )  # fmt: skip
    accuracy = f"{result.val_accuracy:.2%}" if result.val_accuracy is not None else "-"
    seconds = f"{result.train_seconds:.1f}s" if result.train_seconds is not None else "-"
    console.print(
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
    console.print(f"report written to {path}")


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
    console.print(f"student exported to {path}")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
