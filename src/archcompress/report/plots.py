"""Report figures as PNG bytes (matplotlib, Agg backend): the accuracy/size Pareto plot and the search curve."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox


@dataclass(frozen=True)
class Evaluation:
    """One evaluated candidate of a search, in evaluation order."""

    seconds: float  # wall time since the run's first evaluation finished
    params: int | None  # None when it did not train (invalid, diverged, failed)
    val_accuracy: float | None  # fraction in [0, 1]
    reward: float  # the N2N reward (-1 for a candidate that did not train)


@dataclass(frozen=True)
class RunSeries:
    """What the figures show of one run."""

    label: str  # legend entry, e.g. "run-a (n2n)"
    evaluations: tuple[Evaluation, ...]
    teacher_params: int | None = None
    teacher_val_accuracy: float | None = None
    student_params: int | None = None  # the chosen student after its final distillation
    student_val_accuracy: float | None = None


def pareto_front(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The points no other point beats on both axes (fewer params and higher accuracy), by increasing params."""
    front: list[tuple[int, float]] = []
    for params, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((params, accuracy))
    return front


def pareto_plot(runs: Sequence[RunSeries], title: str = "Validation accuracy vs size") -> bytes:
    """PNG bytes of :func:`pareto_figure`."""
    return figure_png(pareto_figure(runs, title))


def search_curve_plot(runs: Sequence[RunSeries], title: str = "Search progress") -> bytes:
    """PNG bytes of :func:`search_curve_figure`."""
    return figure_png(search_curve_figure(runs, title))


def pareto_figure(runs: Sequence[RunSeries], title: str = "Validation accuracy vs size") -> Figure:
    """Val accuracy (%) against params (log scale): every trained candidate, each run's Pareto front, the
    chosen student (star) and the teacher (square). One run: points coloured by evaluation order; several:
    one colour per run, with a legend."""
    from matplotlib import colormaps

    figure = _figure(8.0, 5.5)
    axes = figure.subplots()
    several = len(runs) > 1
    palette = colormaps["tab10"]
    runs = _distinct_labels(runs)
    teachers: set[tuple[int, float]] = set()
    labels: list[Annotation] = []  # the students' text labels, kept apart once all are placed
    for position, run in enumerate(runs):
        trained = [(i, e) for i, e in enumerate(run.evaluations, 1) if e.params and e.val_accuracy is not None]
        points = [(e.params or 0, 100.0 * (e.val_accuracy or 0.0)) for _, e in trained]
        colour = palette(position % 10)
        if points:
            xs, ys = zip(*points, strict=True)
            if several:
                axes.scatter(xs, ys, s=28, color=colour, alpha=0.75, label=f"{run.label}: candidates", zorder=2)
            else:
                order = [i for i, _ in trained]
                dots = axes.scatter(xs, ys, s=32, c=order, cmap="viridis", alpha=0.85, label="candidates", zorder=2)
                figure.colorbar(dots, ax=axes, label="evaluation number (search order)")
            front = pareto_front(points)
            fx, fy = zip(*front, strict=True)
            axes.step(fx, fy, where="post", color=colour if several else "0.3", linestyle="--", linewidth=1.2,
                      label=f"{run.label}: Pareto front" if several else "Pareto front", zorder=1)  # fmt: skip
        if run.student_params and run.student_val_accuracy is not None:
            sx, sy = run.student_params, 100.0 * run.student_val_accuracy
            label = f"{run.label}: student" if several else "chosen student"
            axes.scatter([sx], [sy], marker="*", s=260, color=colour if several else "crimson", edgecolor="black",
                         linewidth=0.8, zorder=4, label=label)  # fmt: skip
            # Several runs: name the run in its colour, with a line to its star, as labels may be moved apart.
            text = f"{run.label}: student" if several else "student"
            labels.append(axes.annotate(
                f"{text}\n{_count(sx)} params, {sy:.1f}%", (sx, sy), xytext=(8, 8), textcoords="offset points",
                fontsize=8, zorder=5, color=colour if several else "black",
                arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.8, "shrinkA": 1, "shrinkB": 6}
                if several else None,
            ))  # fmt: skip
        if run.teacher_params and run.teacher_val_accuracy is not None:
            teachers.add((run.teacher_params, 100.0 * run.teacher_val_accuracy))
    fixed: list[Annotation] = []
    for number, (tx, ty) in enumerate(sorted(teachers)):
        axes.scatter([tx], [ty], marker="s", s=90, color="black", zorder=4, label="teacher" if number == 0 else None)
        fixed.append(axes.annotate(
            f"teacher\n{_count(tx)} params, {ty:.1f}%", (tx, ty), xytext=(-10, -6), textcoords="offset points",
            ha="right", va="top", fontsize=8, zorder=5,
        ))  # fmt: skip
    axes.margins(x=0.08, y=0.1)
    _log_params_axis(axes)
    axes.set_xlabel("parameters (count, log scale)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    _separate(figure, axes, fixed, labels)
    return figure


def _separate(
    figure: Figure, axes: Axes, fixed: Sequence[Annotation], movable: Sequence[Annotation], gap: float = 2.0
) -> None:
    """Move each of ``movable`` up or down (in offset points) until its text covers neither a ``fixed`` text, nor
    a point it labels, nor a text placed before it: two runs' students often lie on the same spot."""
    from matplotlib.transforms import Bbox

    figure.draw_without_rendering()  # lays the figure out, so that text extents are final
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    placed = [_text_box(annotation, renderer) for annotation in fixed]
    points_per_pixel = 72.0 / figure.dpi
    for annotation in movable:  # the students' stars (s=260: about 16 points wide) are not to be covered either
        x, y = axes.transData.transform(annotation.xy)  # data -> pixels
        half = 9.0 / points_per_pixel
        placed.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    # Lowest first, stacking upwards: above a student lies the Pareto front's empty side (nothing is both
    # smaller and more accurate), below it the dominated candidates; downwards where the axes end above.
    top = axes.get_window_extent(renderer).y1
    for annotation in sorted(movable, key=lambda a: float(a.xy[1])):
        start = annotation.xyann
        box = _slide(annotation, placed, renderer, +1.0, gap / points_per_pixel, points_per_pixel)
        if box.y1 > top:
            annotation.xyann = start
            box = _slide(annotation, placed, renderer, -1.0, gap / points_per_pixel, points_per_pixel)
        placed.append(box)


def _slide(
    annotation: Annotation, placed: Sequence[Bbox], renderer: Any, direction: float, gap: float, points_per_pixel: float
) -> Bbox:
    """Move ``annotation`` up (+1) or down (-1) past each box of ``placed`` it overlaps; its final text box."""
    for _ in range(4 * len(placed) + 4):  # each step moves past one obstacle: a bound, never reached
        box = _text_box(annotation, renderer)
        hit = next((other for other in placed if box.overlaps(other)), None)
        if hit is None:
            return box
        pixels = hit.y1 - box.y0 + gap if direction > 0 else -(box.y1 - hit.y0 + gap)
        dx, dy = annotation.xyann
        annotation.xyann = (dx, dy + pixels * points_per_pixel)
    return _text_box(annotation, renderer)


def _distinct_labels(runs: Sequence[RunSeries]) -> list[RunSeries]:
    """The runs, a repeated label numbered (``run (n2n)``, ``run (n2n) #2``) so that the figure tells them apart."""
    seen: dict[str, int] = {}
    distinct = []
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        distinct.append(run if seen[run.label] == 1 else replace(run, label=f"{run.label} #{seen[run.label]}"))
    return distinct


def _text_box(annotation: Annotation, renderer: Any) -> Bbox:
    """The pixel extent of an annotation's text alone (``get_window_extent`` includes its line to the point)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def search_curve_figure(runs: Sequence[RunSeries], title: str = "Search progress") -> Figure:
    """Best reward so far against the evaluation number (left) and wall time (right), one line per run."""
    figure = _figure(10.0, 4.0)
    by_count, by_time = figure.subplots(1, 2, sharey=True)
    for run in runs:
        if not run.evaluations:
            continue
        best = _running_max([e.reward for e in run.evaluations])
        label = run.label if len(runs) > 1 else "best reward so far"
        by_count.step(range(1, len(best) + 1), best, where="post", marker="o", markersize=3, label=label)
        ordered = sorted(run.evaluations, key=lambda e: e.seconds)
        by_time.step([e.seconds for e in ordered], _running_max([e.reward for e in ordered]), where="post",
                     marker="o", markersize=3, label=label)  # fmt: skip
    by_count.set_xlabel("evaluations (count)")
    by_count.set_ylabel("best reward so far (N2N reward, -1 = failed)")
    by_time.set_xlabel("wall time since the first evaluation (s)")
    for axes in (by_count, by_time):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
    return figure


def _log_params_axis(axes: Axes) -> None:
    """Log-scale x axis labelled 2k, 5k, 10k ...: plain powers of ten alone leave narrow ranges unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_xscale("log")
    low, high = axes.get_xlim()
    subs = (1.0, 2.0, 5.0) if high / max(low, 1e-9) < 1e4 else (1.0,)
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _count(round(value))))
    axes.xaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _running_max(values: Sequence[float]) -> list[float]:
    best: list[float] = []
    for value in values:
        best.append(max(value, best[-1]) if best else value)
    return best


def _count(value: int) -> str:
    """12345 -> '12.3k', 20000 -> '20k'."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return str(value)


def _figure(width: float, height: float) -> Figure:
    # Figure() directly, not pyplot: no global state, no GUI backend, safe in threads and servers
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
