"""Plots (PNG bytes, log-scale params axis) and the self-contained HTML report of one or several runs.

Run directories are assembled here from the real pieces (teacher checkpoint, config.yaml, result store,
saved student, report.json) without training, so the tests take seconds.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from archcompress.checkpoint import TeacherMeta, load_teacher, save_teacher
from archcompress.config import CompressConfig
from archcompress.errors import ArchcompressError
from archcompress.evaluate.store import ResultKey, ResultStore, StoredResult
from archcompress.models import create_model
from archcompress.report import write_report
from archcompress.report.html import read_run
from archcompress.report.measure import layer_rows
from archcompress.report.plots import (
    Evaluation,
    RunSeries,
    figure_png,
    pareto_figure,
    pareto_front,
    pareto_plot,
    search_curve_figure,
    search_curve_plot,
)
from archcompress.space import Candidate, save_student

SHAPE = (1, 8, 8)


# --- building run directories --------------------------------------------------------------------------------


def make_teacher(root: Path) -> Path:
    path = root / "teacher.pt"
    if not path.exists():
        torch.manual_seed(0)
        meta = TeacherMeta(
            model="lenet5", model_kwargs={}, input_shape=SHAPE, num_classes=10, dataset="digits",
            val_accuracy=0.9, test_accuracy=0.88,
        )  # fmt: skip
        save_teacher(path, create_model("lenet5", SHAPE, 10, {}), meta)
    return path


def make_run(root: Path, name: str, *, method: str = "random", seed: int = 0, report: str = "complete") -> Path:
    """A run directory as `compress` leaves it; ``report``: complete, partial (complete: false) or none."""
    teacher_path = make_teacher(root)
    teacher = load_teacher(teacher_path)
    run = root / name
    run.mkdir()
    config = CompressConfig(teacher=str(teacher_path), out=str(run), method=method)
    space = config.space.space_of(teacher.model, SHAPE)  # the run's own space, as compress derives it
    (run / "config.yaml").write_text(config.to_yaml())
    store = ResultStore(run / "store.sqlite")
    rng = np.random.default_rng(seed)
    candidates = list({space.candidate_hash(c): c for c in (space.sample(rng) for _ in range(8))}.items())
    results = []
    for i, (digest, candidate) in enumerate(candidates):
        cost = space.cost(candidate)
        ok = i != 1  # one failed evaluation, as searches have
        result = StoredResult(
            key=ResultKey(teacher.sha256, "digits", "budget", 0, digest), status="ok" if ok else "diverged",
            val_accuracy=float(rng.uniform(0.3, 0.9)) if ok else None, params=cost.params, macs=cost.macs,
            train_seconds=1.0, method=method, candidate=candidate.to_dict(), created=1000.0 + 2.5 * i,
        )  # fmt: skip
        store.put(result)
        results.append((result, candidate))
    if report == "none":
        return run
    best, candidate = max((r for r in results if r[0].status == "ok"), key=lambda r: r[0].val_accuracy or 0.0)
    built = space.build(candidate)
    save_student(built, run / "student")
    teacher_cost = space.teacher_cost
    document = {
        "complete": report == "complete",
        "method": method,
        "dataset": "digits",
        "teacher": {
            "checkpoint": str(teacher_path), "sha256": teacher.sha256, "model": "lenet5",
            "params": teacher_cost.params, "macs": teacher_cost.macs, "val_accuracy": 0.9, "test_accuracy": 0.88,
        },
        "student": {
            "candidate": candidate.to_dict(), "candidate_hash": best.key.candidate_hash,
            "search_val_accuracy": best.val_accuracy, "val_accuracy": 0.8, "test_accuracy": 0.79,
            "params": built.params, "macs": built.macs,
        },
        "compression": {"params": teacher_cost.params / built.params, "macs": teacher_cost.macs / built.macs},
        "target": {"ratio": None, "met": True},
        "search": {"evaluations": len(results), "statuses": {"ok": len(results) - 1, "diverged": 1}, "seconds": 20.0},
        "top_candidates": [
            {"candidate_hash": r.key.candidate_hash, "val_accuracy": r.val_accuracy, "params": r.params,
             "macs": r.macs, "reward": 0.5}
            for r, _ in results if r.status == "ok"
        ],
        "seconds": 25.0,
    }  # fmt: skip
    (run / "report.json").write_text(json.dumps(document, indent=1))
    return run


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def run_a(root: Path) -> Path:
    return make_run(root, "run-a", method="random", seed=0)


@pytest.fixture(scope="module")
def run_b(root: Path) -> Path:
    return make_run(root, "run-b", method="n2n", seed=1)


# --- reading the HTML --------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tables (rows of cell texts, by class), images and every tag of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.row_classes: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "table":
            self.tables.append((attributes.get("class", ""), []))
        elif tag == "tr":
            self.tables[-1][1].append([])
            self.row_classes.append(attributes.get("class", ""))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, name: str) -> list[list[str]]:
        (rows,) = [rows for cls, rows in self.tables if cls == name]
        return rows

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def decode_png(data_uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(data_uri[len(prefix) :])))
    image.load()
    return image


def assert_self_contained(text: str, page: Page) -> None:
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert all(image["src"].startswith("data:image/png;base64,") for image in page.images)


# --- plots ---------------------------------------------------------------------------------------------------


def series(label: str, offset: float = 0.0) -> RunSeries:
    evaluations = (
        Evaluation(0.0, 5_000, 0.6 + offset, 0.3),
        Evaluation(1.5, None, None, -1.0),
        Evaluation(2.0, 20_000, 0.8 + offset, 0.4),
        Evaluation(4.0, 2_000, 0.5 + offset, 0.2),
        Evaluation(9.0, 50_000, 0.7 + offset, 0.1),
    )
    return RunSeries(label, evaluations, 100_000, 0.9, 5_000, 0.65 + offset)


def test_pareto_front_keeps_only_points_nothing_beats() -> None:
    points = [(5, 0.6), (20, 0.8), (2, 0.5), (50, 0.7), (20, 0.75), (5, 0.55)]
    assert pareto_front(points) == [(2, 0.5), (5, 0.6), (20, 0.8)]
    assert pareto_front([]) == []


@pytest.mark.parametrize("runs", [1, 3])
def test_pareto_figure_has_a_log_params_axis_labelled_with_units(runs: int) -> None:
    figure = pareto_figure([series(f"run {i}", 0.02 * i) for i in range(runs)])
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert "parameters" in axes.get_xlabel() and "log" in axes.get_xlabel()
    assert axes.get_ylabel() == "validation accuracy (%)"
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "teacher" in labels
    if runs == 1:
        assert {"candidates", "Pareto front", "chosen student"} <= set(labels)
        assert figure.axes[1].get_ylabel().startswith("evaluation number")  # the colour bar
    else:
        assert all(f"run {i}: student" in labels for i in range(runs))
    annotations = [child.get_text() for child in axes.texts]
    students = ["student"] if runs == 1 else [f"run {i}: student" for i in range(runs)]
    assert all(any(a.startswith(s + "\n") for a in annotations) for s in students)
    assert any(a.startswith("teacher") for a in annotations)


def test_search_curve_figure_shows_the_best_reward_so_far() -> None:
    figure = search_curve_figure([series("a"), series("b", 0.01)])
    by_count, by_time = figure.axes[:2]
    assert by_count.get_xlabel() == "evaluations (count)"
    assert by_time.get_xlabel().endswith("(s)")
    assert "best reward so far" in by_count.get_ylabel()
    line = by_count.get_lines()[0]
    assert list(line.get_ydata()) == [0.3, 0.3, 0.4, 0.4, 0.4]
    assert list(by_time.get_lines()[0].get_xdata()) == [0.0, 1.5, 2.0, 4.0, 9.0]


def test_plots_are_png_bytes(tmp_path: Path) -> None:
    for data in (pareto_plot([series("a")]), search_curve_plot([series("a")]), figure_png(pareto_figure([]))):
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size[0] >= 600


# --- HTML ---------------------------------------------------------------------------------------------------


def test_single_run_report(run_a: Path) -> None:
    path = write_report([run_a], measure=False)
    assert path == run_a / "report.html"
    text = path.read_text()
    page = Page(text)
    assert_self_contained(text, page)
    assert len(page.images) == 2
    for image in page.images:
        decoded = decode_png(image["src"])
        assert decoded.size[0] >= 600 and decoded.size[1] >= 300
    assert "Complete run" in page.all_text() and "Incomplete" not in page.all_text()

    comparison = page.table("comparison")
    assert comparison[0] == ["metric", "teacher", "student", "student vs teacher"]
    by_metric = {row[0]: row[1:] for row in comparison[1:]}
    report = json.loads((run_a / "report.json").read_text())
    assert by_metric["test accuracy"] == ["88.00%", "79.00%", "-9.0 points"]
    teacher_params, student_params = report["teacher"]["params"], report["student"]["params"]
    ratio = report["compression"]["params"]
    assert by_metric["parameters"] == [f"{teacher_params:,}", f"{student_params:,}", f"{ratio:.1f}x fewer"]
    assert set(by_metric) >= {"MACs per sample", "CPU latency, batch 1 (ms)", "CPU latency, batch 64 (ms)",
                              "weights file size (state_dict)"}  # fmt: skip
    assert by_metric["CPU latency, batch 1 (ms)"][0] == "–"  # not measured with measure=False

    teacher = load_teacher(report["teacher"]["checkpoint"])
    space = CompressConfig.from_yaml(run_a / "config.yaml").space.space_of(teacher.model, SHAPE)
    rows = layer_rows(space, Candidate.from_dict(report["student"]["candidate"]))
    layers = page.table("layers")[1:]
    assert len(layers) == len(rows) == len(space.units)
    for cells, row in zip(layers, rows, strict=True):
        assert cells[1] == row["name"]
        assert cells[3] in (("kept", "shrunk") if row["kept"] else ("removed",))
        assert cells[4].startswith(f"{row['teacher_channels']} → ")
    assert len(page.table("top")) == 1 + len(report["top_candidates"])
    assert f"{report['compression']['params']:.1f}x fewer parameters" in page.all_text()


def test_report_uses_measured_figures_and_layers_from_report_json(root: Path) -> None:
    run = make_run(root, "run-measured", seed=3)
    report = json.loads((run / "report.json").read_text())
    measured = {"params": 1, "macs": 2, "state_dict_bytes": 4321, "latency_ms": {"1": 0.125, "64": 3.5},
                "latency": {"runtime": "onnxruntime x", "threads": 1, "statistic": "median", "warmup": 3}}  # fmt: skip
    report["teacher"]["measured"] = measured
    report["student"]["measured"] = {**measured, "state_dict_bytes": 1234, "latency_ms": {"1": 0.025, "64": 7.0}}
    report["layers"] = [
        {"index": 0, "name": "only-unit", "kind": "conv", "depth": 0, "kept": False, "teacher_channels": 6,
         "student_channels": None, "teacher_params": 156, "student_params": 0, "teacher_kernel": [5, 5],
         "student_kernel": None},
    ]  # fmt: skip
    (run / "report.json").write_text(json.dumps(report))
    page = Page(write_report([run], run / "custom.html", measure=True).read_text())
    by_metric = {row[0]: row[1:] for row in page.table("comparison")[1:]}
    assert by_metric["CPU latency, batch 1 (ms)"] == ["0.125", "0.025", "5.0x faster"]
    assert by_metric["CPU latency, batch 64 (ms)"] == ["3.50", "7.00", "2.0x slower"]
    assert by_metric["weights file size (state_dict)"] == ["4.3 kB", "1.2 kB", "3.5x smaller"]
    assert page.table("layers")[1] == ["0", "only-unit", "conv", "removed", "6 → –", "5×5 → –", "156 → 0"]
    assert "removed" in page.row_classes


def test_report_measures_what_report_json_lacks(run_a: Path, tmp_path: Path) -> None:
    page = Page(write_report([run_a], tmp_path / "measured.html").read_text())
    by_metric = {row[0]: row[1:] for row in page.table("comparison")[1:]}
    for metric in ("CPU latency, batch 1 (ms)", "CPU latency, batch 64 (ms)", "weights file size (state_dict)"):
        teacher, student, ratio = by_metric[metric]
        assert "–" not in (teacher, student, ratio), metric
    assert "onnxruntime" in page.all_text()


@pytest.mark.parametrize("state", ["partial", "none"])
def test_incomplete_runs_are_marked(root: Path, state: str) -> None:
    run = make_run(root, f"run-{state}", seed=4, report=state)
    text = write_report([run], measure=False).read_text()
    page = Page(text)
    banner = "report.json says complete: false" if state == "partial" else "no report.json"
    assert "Incomplete run" in page.all_text() and banner in page.all_text()
    assert len(page.images) == 2  # the stored evaluations are still plotted
    assert "Complete run" not in page.all_text()
    assert read_run(run).complete is False


def test_several_runs_need_out_and_share_the_plots(run_a: Path, run_b: Path, root: Path) -> None:
    with pytest.raises(ArchcompressError, match="--out"):
        write_report([run_a, run_b])
    path = write_report([run_a, run_b], root / "combined" / "both.html", measure=False)
    text = path.read_text()
    page = Page(text)
    assert_self_contained(text, page)
    overview = page.table("overview")
    assert [row[:3] for row in overview[1:]] == [["run-a", "random", "complete"], ["run-b", "n2n", "complete"]]
    assert len(page.images) == 2
    assert sum(1 for cls, _ in page.tables if cls == "comparison") == 2
    assert sum(1 for cls, _ in page.tables if cls == "layers") == 2


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda root: root / "missing", ["does not exist"]),
        (lambda root: root, ["not a run directory", "report.json", "store.sqlite"]),
    ],
    ids=["missing", "not-a-run"],
)
def test_report_errors_are_one_line(tmp_path: Path, make: Any, words: list[str]) -> None:
    with pytest.raises(ArchcompressError) as caught:
        write_report([make(tmp_path)])
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "report.html").exists()


def _text_boxes(figure: Any) -> dict[str, Any]:
    """Each annotation's text (not its line to the point) as a pixel box, after the figure is drawn."""
    from matplotlib.text import Text

    figure_png(figure)  # draws it, with its final layout
    renderer = figure.canvas.get_renderer()
    return {a.get_text(): Text.get_window_extent(a, renderer) for a in figure.axes[0].texts}


@pytest.mark.parametrize("offsets", [(0.0, 0.0, 0.0), (0.0, 0.002, 0.001)], ids=["same spot", "close"])
def test_several_runs_students_get_distinct_labels_that_do_not_overlap(offsets: tuple[float, ...]) -> None:
    # `report A B --out compare.html` with two runs of one method: their students lay on (nearly) the same spot
    # and both were labelled "student" at the same offset.
    runs = [series(label, offset) for label, offset in zip(["A (n2n)", "B (n2n)", "C (random)"], offsets, strict=True)]
    figure = pareto_figure(runs)
    boxes = _text_boxes(figure)
    students = {text: box for text, box in boxes.items() if "student" in text}
    assert sorted(text.split("\n")[0] for text in students) == ["A (n2n): student", "B (n2n): student",
                                                                "C (random): student"]  # fmt: skip
    placed = list(boxes.values())
    for i, first in enumerate(placed):
        for second in placed[i + 1 :]:
            assert not first.overlaps(second), (first, second)
    axes = figure.axes[0]
    for run in runs:  # no label covers a student's star
        x, y = axes.transData.transform((run.student_params, 100.0 * (run.student_val_accuracy or 0.0)))
        assert not any(box.contains(x, y) for box in placed)


def test_runs_with_the_same_label_are_told_apart() -> None:
    figure = pareto_figure([series("run (n2n)"), series("run (n2n)", 0.01)])
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "run (n2n): student" in legend and "run (n2n) #2: student" in legend
    texts = [text for text in _text_boxes(figure) if "student" in text]
    assert len(set(texts)) == 2


def test_one_runs_student_label_stays_beside_its_star() -> None:
    figure = pareto_figure([series("a")])
    (student,) = [a for a in figure.axes[0].texts if a.get_text().startswith("student")]
    dx, dy = student.xyann
    assert dx == 8 and 8 <= dy < 20  # nudged at most off its own star, not sent far away


def test_labels_of_students_at_the_top_of_the_plot_stay_inside_the_axes() -> None:
    from dataclasses import replace

    runs = [replace(series(name), student_val_accuracy=0.95) for name in ("A (n2n)", "B (n2n)")]  # above all else
    figure = pareto_figure(runs)
    boxes = _text_boxes(figure)
    inside = figure.axes[0].get_window_extent(figure.canvas.get_renderer())
    students = [box for text, box in boxes.items() if "student" in text]
    assert len(students) == 2 and not students[0].overlaps(students[1])
    assert all(inside.y0 <= box.y0 and box.y1 <= inside.y1 for box in students)
