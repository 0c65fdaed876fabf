"""One self-contained ``report.html`` for one or several run directories (inline CSS, images as data URIs).

Everything comes from the run directory: ``report.json`` (written at the end of a run), ``store.sqlite`` (every
evaluation, so an interrupted run still gets its plots), ``config.yaml`` and ``student/``. Figures the report
lacks (``teacher.measured``, ``student.measured``, ``layers``; see :func:`~archcompress.report.enrich_report`)
are measured here when the teacher checkpoint and the student can be loaded. Nothing in a run directory is
modified; only the HTML file is written.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from archcompress.errors import ArchcompressError, first_line
from archcompress.evaluate.store import ResultStore, StoredResult
from archcompress.report.measure import layer_rows, measure_model
from archcompress.report.plots import Evaluation, RunSeries, pareto_plot, search_curve_plot
from archcompress.rundir import CONFIG_FILE, REPORT_FILE, STORE_FILE, STUDENT_DIR
from archcompress.runtime import atomic_write_text
from archcompress.search.reward import INVALID_REWARD, n2n_reward
from archcompress.version import __version__

REPORT_HTML = "report.html"


@dataclass
class RunRecord:
    """What a run directory holds, read once; ``notes`` collects what could not be shown and why."""

    path: Path
    report: dict[str, Any]
    has_report: bool
    results: tuple[StoredResult, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True only for a run whose report.json says it finished."""
        return self.has_report and self.report.get("complete") is True

    @property
    def name(self) -> str:
        return self.path.resolve().name or str(self.path)

    @property
    def label(self) -> str:
        method = self.report.get("method") or _config_value(self.path, "method")
        return f"{self.name} ({method})" if method else self.name


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read ``report.json`` and ``store.sqlite`` of a run directory (either may be missing, not both)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ArchcompressError(
            f"run directory {path} does not exist: pass the --out of an `archcompress compress` run"
        )
    report_path, store_path = path / REPORT_FILE, path / STORE_FILE
    if not report_path.is_file() and not store_path.is_file():
        raise ArchcompressError(
            f"{path} is not a run directory (no {REPORT_FILE} and no {STORE_FILE}): pass the --out of an "
            "`archcompress compress` run"
        )
    report: dict[str, Any] = {}
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArchcompressError(f"cannot read {report_path} ({first_line(exc)}): it is damaged") from exc
        if not isinstance(report, dict):
            raise ArchcompressError(f"{report_path} is not a JSON object: it was not written by archcompress")
    results: tuple[StoredResult, ...] = ()
    if store_path.is_file():
        teacher_hash = report.get("teacher", {}).get("sha256")
        results = tuple(ResultStore(store_path).query(teacher_hash=teacher_hash))
    return RunRecord(path, report, report_path.is_file(), results)


def write_report(
    run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None, *, measure: bool = True
) -> Path:
    """Write one self-contained HTML report for the runs; returns its path.

    Args:
        out: defaults to ``RUN/report.html`` for a single run; required for several.
        measure: measure latency and file size of teacher and student where ``report.json`` lacks them
            (loads the teacher checkpoint and the student; a few seconds for small models).
    """
    if not run_dirs:
        raise ArchcompressError("give at least one run directory")
    if out is None and len(run_dirs) > 1:
        raise ArchcompressError(
            f"{len(run_dirs)} run directories were given: pass --out PATH for the combined report "
            "(it belongs to none of them)"
        )
    runs = [read_run(d) for d in run_dirs]
    target = Path(out) if out is not None else runs[0].path / REPORT_HTML
    if target.is_dir():
        raise ArchcompressError(f"--out {target} is a directory: give a file path such as {target / REPORT_HTML}")
    atomic_write_text(target, render_html(runs, _Loader(measure)))
    return target


class _Loader:
    """Loads teachers, spaces and students on demand, once each, turning failures into notes."""

    def __init__(self, measure: bool) -> None:
        self.measure = measure
        self._cache: dict[tuple[str, ...], Any] = {}

    def cached(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def teacher(self, run: RunRecord) -> Any:
        """The loaded ``Teacher`` of a run, or None (with a note)."""
        from archcompress.checkpoint import load_teacher

        checkpoint = run.report.get("teacher", {}).get("checkpoint") or _config_value(run.path, "teacher")
        if not checkpoint:
            run.notes.append("the teacher checkpoint is not recorded in report.json or config.yaml")
            return None
        try:
            return self.cached(("teacher", str(checkpoint)), lambda: load_teacher(checkpoint))
        except ArchcompressError as exc:
            run.notes.append(f"teacher not loaded: {first_line(exc)}")
            return None

    def space(self, run: RunRecord) -> Any:
        """The teacher's ``CompressionSpace`` with the run's space options, or None."""
        from archcompress.config import CompressConfig

        teacher = self.teacher(run)
        if teacher is None:
            return None
        try:
            options = CompressConfig.from_yaml(run.path / CONFIG_FILE).space
        except (ArchcompressError, OSError) as exc:
            run.notes.append(f"{CONFIG_FILE} not read ({first_line(exc)}): layer table omitted")
            return None
        key = ("space", str(teacher.path), repr(options))
        return self.cached(key, lambda: options.space_of(teacher.model, teacher.meta.input_shape))

    def measured(self, run: RunRecord, who: str) -> dict[str, Any] | None:
        """``report[who]["measured"]``, else measured now (``who`` is teacher or student), else None."""
        stored = run.report.get(who, {}).get("measured")
        if stored or not self.measure:
            return stored or None
        if who == "teacher":
            teacher = self.teacher(run)
            if teacher is None:
                return None
            key = ("measure", str(teacher.path))
            return self.cached(key, lambda: measure_model(teacher.model, teacher.meta.input_shape))
        from archcompress.space import load_student

        try:
            student = load_student(run.path / STUDENT_DIR)
        except ArchcompressError as exc:
            run.notes.append(f"student not loaded: {first_line(exc)}")
            return None
        return measure_model(student, student.arch.input_shape)

    def layers(self, run: RunRecord) -> list[dict[str, Any]] | None:
        """``report["layers"]``, else derived from the teacher's space and the student's candidate, else None."""
        from archcompress.space import Candidate, StudentArch
        from archcompress.space.student import read_student_arch

        if run.report.get("layers"):
            return list(run.report["layers"])
        candidate = run.report.get("student", {}).get("candidate")
        if candidate is None:
            return None
        space = self.space(run)
        if space is None:
            return None
        try:
            rows = layer_rows(space, Candidate.from_dict(candidate))
            saved = read_student_arch(run.path / STUDENT_DIR)["arch"] if (run.path / STUDENT_DIR).is_dir() else None
            if saved is not None and StudentArch.from_dict(saved) != space.arch(Candidate.from_dict(candidate)):
                # e.g. config.yaml edited since: the rebuilt space would describe another student
                run.notes.append("layer table omitted: the teacher's space no longer gives the saved student")
                return None
        except ArchcompressError as exc:
            run.notes.append(f"layer table omitted: {first_line(exc)}")
            return None
        return rows

    def teacher_figures(self, run: RunRecord) -> tuple[int | None, float | None]:
        """Teacher params (as the space counts them) and val accuracy, for rewards and plots."""
        teacher = run.report.get("teacher", {})
        if teacher.get("params") and teacher.get("val_accuracy") is not None:
            return int(teacher["params"]), float(teacher["val_accuracy"])
        space, loaded = self.space(run), self.teacher(run)
        params = space.teacher_cost.params if space is not None else None
        return params, (loaded.meta.val_accuracy if loaded is not None else None)


def run_series(run: RunRecord, teacher_params: int | None, teacher_val: float | None) -> RunSeries:
    """A run's evaluations (in store order) and its teacher and student, as the plots take them."""
    start = min((r.created for r in run.results), default=0.0)
    evaluations = []
    for result in run.results:
        trained = result.status == "ok" and result.params and result.val_accuracy is not None
        reward = INVALID_REWARD
        if trained and teacher_params and teacher_val:
            reward = n2n_reward(result.val_accuracy or 0.0, result.params or 0, teacher_val, teacher_params)
        elif trained:
            reward = math.nan  # no teacher figures: nothing to compare against
        evaluations.append(
            Evaluation(
                seconds=result.created - start,
                params=result.params if trained else None,
                val_accuracy=result.val_accuracy if trained else None,
                reward=reward,
            )
        )
    student = run.report.get("student", {})
    return RunSeries(
        label=run.label,
        evaluations=tuple(evaluations),
        teacher_params=teacher_params,
        teacher_val_accuracy=teacher_val,
        student_params=student.get("params"),
        student_val_accuracy=student.get("val_accuracy"),
    )


# --- HTML --------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #dde3ec; }
h3 { margin-top: 1.6rem; } .meta { color: #5b6577; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d5dbe5; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #eef2f7; } td.text, th.text { text-align: left; }
tr.removed td { color: #9aa3b2; background: #f7f8fa; } tr.shrunk td.status { color: #a05a00; font-weight: 600; }
tr.removed td.status { color: #b42318; font-weight: 600; }
tr.chosen td { background: #edf7ee; font-weight: 600; }
.banner { border: 2px solid #b42318; background: #fdecea; color: #7a1a12; padding: 0.7rem 1rem; margin: 1rem 0;
          border-radius: 6px; font-weight: 600; }
.ok { border: 1px solid #2e7d32; background: #edf7ee; color: #1b5e20; padding: 0.4rem 0.8rem; border-radius: 6px;
      display: inline-block; }
.notes { color: #5b6577; font-size: 0.85rem; } img { max-width: 100%; height: auto; border: 1px solid #e3e8ef; }
.big { font-size: 1.15rem; font-weight: 600; }
"""


def render_html(runs: Sequence[RunRecord], loader: _Loader) -> str:
    """The whole page for ``runs``."""
    series = []
    sections = []
    for run in runs:
        teacher_params, teacher_val = loader.teacher_figures(run)
        series.append(run_series(run, teacher_params, teacher_val))
        sections.append(_run_section(run, loader, len(runs) > 1))
    title = "archcompress report: " + ", ".join(run.name for run in runs)
    parts = [
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='meta'>written {escape(_now())} by archcompress {escape(__version__)}</p>",
    ]
    if len(runs) > 1:
        parts.append(_overview(runs))
    parts.append("<h2>Search</h2>")
    if any(s.evaluations for s in series):
        parts.append(_image(pareto_plot(series), "validation accuracy against parameters, log scale"))
        parts.append(_image(search_curve_plot(series), "best reward so far against evaluations and wall time"))
    else:
        parts.append("<p>No evaluations are stored (store.sqlite is missing or empty).</p>")
    parts.extend(sections)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _run_section(run: RunRecord, loader: _Loader, several: bool) -> str:
    report = run.report
    out = [f"<h2>Run {escape(run.name)}</h2>", f"<p class='meta'>{escape(str(run.path))}</p>"]
    if not run.has_report:
        out.append(
            "<div class='banner'>Incomplete run: no report.json. The run stopped before it chose and distilled a "
            f"student; shown are the {len(run.results)} evaluations stored so far. Continue it with "
            "<code>archcompress compress --resume --out RUN</code>.</div>"
        )
    elif not run.complete:
        out.append(
            "<div class='banner'>Incomplete run: report.json says <code>complete: false</code>. Figures below may "
            "be partial or provisional.</div>"
        )
    else:
        out.append("<p class='ok'>Complete run</p>")
    out.append(_facts(run))
    if report.get("teacher") or report.get("student"):
        teacher_measured = loader.measured(run, "teacher")
        student_measured = loader.measured(run, "student")
        out.append(_compression(report))
        out.append("<h3>Teacher vs student</h3>")
        out.append(_comparison(report, teacher_measured, student_measured))
    layers = loader.layers(run)
    out.append("<h3>Layers: teacher → student</h3>")
    out.append(_layers_table(layers) if layers else "<p>No layer table: it needs report.json's student and the "
               "teacher checkpoint (or <code>layers</code> in report.json).</p>")  # fmt: skip
    out.append(_constraints_table(report))
    if report.get("top_candidates"):
        out.append("<h3>Top candidates (by reward)</h3>")
        out.append(_top_table(report["top_candidates"], report.get("teacher", {}).get("params")))
    if run.notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in dict.fromkeys(run.notes))
        out.append(f"<div class='notes'><p>Notes:</p><ul>{items}</ul></div>")
    return "\n".join(out)


def _facts(run: RunRecord) -> str:
    report = run.report
    search = report.get("search", {})
    statuses = search.get("statuses") or _count_statuses(run.results)
    target = report.get("target", {})
    rows = [
        ("method", report.get("method") or _config_value(run.path, "method")),
        ("data set", report.get("dataset") or _config_value(run.path, "dataset")),
        ("teacher", report.get("teacher", {}).get("model")),
        ("teacher checkpoint", report.get("teacher", {}).get("checkpoint") or _config_value(run.path, "teacher")),
        ("evaluations", search.get("evaluations", len(run.results))),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in statuses.items()) or None),
        ("search time", _seconds(search.get("seconds"))),
        ("total time", _seconds(report.get("seconds"))),
        ("invocations", report.get("invocations") if (report.get("invocations") or 1) > 1 else None),  # resumed
    ]
    if target.get("ratio"):
        rows.append(("target", f"{target['ratio']:g}x ({'met' if target.get('met') else 'NOT met'})"))
    body = "".join(
        f"<tr><th class='text'>{escape(k)}</th><td class='text'>{escape(str(v))}</td></tr>"
        for k, v in rows
        if v not in (None, "")
    )
    return f"<table class='facts'>{body}</table>"


def _compression(report: dict[str, Any]) -> str:
    ratios = report.get("compression", {})
    if not ratios:
        return ""
    parts = []
    if ratios.get("params"):
        parts.append(f"{ratios['params']:.1f}x fewer parameters")
    if ratios.get("macs"):
        macs = ratios["macs"]
        parts.append(f"{macs:.1f}x fewer MACs" if macs >= 1 else f"{1 / macs:.1f}x more MACs")
    return f"<p class='big compression'>Compression: {escape(', '.join(parts))}</p>"


def _comparison(report: dict[str, Any], teacher_m: dict[str, Any] | None, student_m: dict[str, Any] | None) -> str:
    teacher, student = report.get("teacher", {}), report.get("student", {})
    tm, sm = teacher_m or {}, student_m or {}

    def latency(measured: dict[str, Any], batch: str) -> float | None:
        value = measured.get("latency_ms", {}).get(batch)
        return float(value) if value is not None else None

    # (metric, teacher, student, format, words for student < teacher / student > teacher; None: a difference)
    rows: list[tuple[str, Any, Any, Callable[[Any], str], tuple[str, str] | None]] = [
        ("test accuracy", teacher.get("test_accuracy"), student.get("test_accuracy"), _pct, None),
        ("val accuracy", teacher.get("val_accuracy"), student.get("val_accuracy"), _pct, None),
        ("parameters", teacher.get("params") or tm.get("params"), student.get("params") or sm.get("params"),
         _int, ("fewer", "more")),
        ("MACs per sample", teacher.get("macs") or tm.get("macs"), student.get("macs") or sm.get("macs"), _int,
         ("fewer", "more")),
        ("CPU latency, batch 1 (ms)", latency(tm, "1"), latency(sm, "1"), _ms, ("faster", "slower")),
        ("CPU latency, batch 64 (ms)", latency(tm, "64"), latency(sm, "64"), _ms, ("faster", "slower")),
        ("weights file size (state_dict)", tm.get("state_dict_bytes"), sm.get("state_dict_bytes"), _bytes,
         ("smaller", "larger")),
    ]  # fmt: skip
    body = []
    for name, t, s, fmt, words in rows:
        change = "–"
        if words is None and t is not None and s is not None:
            change = f"{100 * (s - t):+.1f} points"
        elif words is not None and t and s:
            change = f"{t / s:.1f}x {words[0]}" if t >= s else f"{s / t:.1f}x {words[1]}"
        body.append(
            f"<tr><th class='text'>{escape(name)}</th><td>{escape(fmt(t))}</td><td>{escape(fmt(s))}</td>"
            f"<td>{escape(change)}</td></tr>"
        )
    how = (tm or sm).get("latency", {})
    footnote = ""
    if how:
        footnote = (
            f"<p class='notes'>Latency: {escape(str(how.get('statistic', 'median')))} of timed runs after "
            f"{escape(str(how.get('warmup', '')))} warm-up runs, {escape(str(how.get('runtime', 'onnxruntime')))}, "
            f"{escape(str(how.get('threads', 1)))} thread, on the ONNX export. Size: bytes of the saved "
            "state_dict.</p>"
        )
    errors = [m["latency_error"] for m in (tm, sm) if m.get("latency_error")]
    footnote += "".join(f"<p class='notes'>No latency: {escape(str(e))}</p>" for e in errors)
    return (
        "<table class='comparison'><tr><th class='text'>metric</th><th>teacher</th><th>student</th>"
        f"<th>student vs teacher</th></tr>{''.join(body)}</table>{footnote}"
    )


def _layers_table(rows: Sequence[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        kernel_t, kernel_s = row.get("teacher_kernel"), row.get("student_kernel")
        smaller_kernel = kernel_t and kernel_s and list(kernel_s) != list(kernel_t)
        if not row["kept"]:
            status = "removed"
        elif (row.get("student_channels") or 0) < row["teacher_channels"] or smaller_kernel:
            status = "shrunk"
        else:
            status = "kept"
        student_channels = row.get("student_channels") if row["kept"] else None
        channels = f"{row['teacher_channels']} → {student_channels if student_channels is not None else '–'}"
        kernel = f"{_shape(kernel_t)} → {_shape(kernel_s) if row['kept'] else '–'}" if kernel_t else ""
        params = f"{row['teacher_params']:,} → {row['student_params']:,}" if row["teacher_params"] else ""
        indent = 1.2 * int(row.get("depth", 0))
        body.append(
            f"<tr class='{status}'><td>{row['index']}</td>"
            f"<td class='text' style='padding-left:{0.6 + indent:.1f}rem'>{escape(str(row['name']))}</td>"
            f"<td class='text'>{escape(str(row['kind']))}</td><td class='text status'>{status}</td>"
            f"<td>{escape(channels)}</td><td>{escape(kernel)}</td><td>{escape(params)}</td></tr>"
        )
    kept = sum(1 for r in rows if r["kept"])
    return (
        "<table class='layers'><tr><th>#</th><th class='text'>unit</th><th class='text'>kind</th>"
        "<th class='text'>status</th><th>channels (teacher → student)</th><th>kernel</th>"
        f"<th>params (teacher → student)</th></tr>{''.join(body)}</table>"
        f"<p class='notes'>{kept} of {len(rows)} units kept; channels are output channels (features once flat).</p>"
    )


def _top_table(top: Sequence[dict[str, Any]], teacher_params: int | None) -> str:
    """One row per candidate (a repeated proposal once), marked where it meets the constraints or was chosen."""
    rows = list({str(c.get("candidate_hash")): c for c in top}.values())

    def mark(value: Any, yes: str) -> str:
        return yes if value is True else ("–" if value is None else "no")

    body = "".join(
        ("<tr class='chosen'>" if c.get("chosen") else "<tr>")
        + f"<td class='text'><code>{escape(str(c.get('candidate_hash', '')))}</code></td>"
        f"<td>{escape(_pct(c.get('val_accuracy')))}</td><td>{escape(_int(c.get('params')))}</td>"
        f"<td>{escape(_ratio(teacher_params / c['params'] if teacher_params and c.get('params') else None))}</td>"
        f"<td>{escape(_int(c.get('macs')))}</td><td>{escape(_number(c.get('reward')))}</td>"
        f"<td class='text'>{mark(c.get('meets_constraints'), 'yes')}</td>"
        f"<td class='text'>{'chosen' if c.get('chosen') else ''}</td></tr>"
        for c in rows
    )
    return (
        "<table class='top'><tr><th class='text'>candidate</th><th>val accuracy (search budget)</th>"
        "<th>parameters</th><th>compression</th><th>MACs</th><th>reward</th><th class='text'>meets constraints</th>"
        f"<th class='text'>final student</th></tr>{body}</table>"
    )


def _constraints_table(report: dict[str, Any]) -> str:
    """The final student against each constraint, and why it was chosen."""
    checks = report.get("constraints") or []
    chosen = report.get("chosen") or {}
    out = []
    if checks:
        body = "".join(
            f"<tr><th class='text'>{escape(str(c.get('name')))}</th><td>{escape(_figure(c.get('limit')))}</td>"
            f"<td>{escape(_figure(c.get('value')))}</td>"
            f"<td class='text'>{'–' if c.get('met') is None else ('met' if c.get('met') else 'NOT met')}</td></tr>"
            for c in checks
        )
        out.append(
            "<h3>Constraints</h3><table class='constraints'><tr><th class='text'>constraint</th><th>limit</th>"
            f"<th>student</th><th class='text'>met</th></tr>{body}</table>"
        )
    if chosen.get("why"):
        out.append(f"<p class='notes'>Chosen: {escape(str(chosen['why']))}</p>")
    return "".join(out)


def _overview(runs: Sequence[RunRecord]) -> str:
    body = []
    for run in runs:
        report = run.report
        student, compression = report.get("student", {}), report.get("compression", {})
        state = "complete" if run.complete else "INCOMPLETE"
        body.append(
            f"<tr><td class='text'>{escape(run.name)}</td><td class='text'>{escape(str(report.get('method', '–')))}"
            f"</td><td class='text'>{state}</td><td>{len(run.results)}</td>"
            f"<td>{escape(_pct(student.get('test_accuracy')))}</td>"
            f"<td>{escape(_pct(report.get('teacher', {}).get('test_accuracy')))}</td>"
            f"<td>{escape(_ratio(compression.get('params')))}</td><td>{escape(_ratio(compression.get('macs')))}</td>"
            "</tr>"
        )
    return (
        "<h2>Runs</h2><table class='overview'><tr><th class='text'>run</th><th class='text'>method</th>"
        "<th class='text'>state</th><th>evaluations</th><th>student test acc</th><th>teacher test acc</th>"
        f"<th>fewer params</th><th>fewer MACs</th></tr>{''.join(body)}</table>"
    )


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<p><img alt='{escape(alt)}' src='data:image/png;base64,{data}'></p>"


def _config_value(run_dir: Path, key: str) -> Any:
    """One top-level value of ``config.yaml`` (None if the file or key is missing)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def _count_statuses(results: Sequence[StoredResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        kind = result.status.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.2f}%"


def _int(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def _ms(value: Any) -> str:
    """Milliseconds with three significant digits below 1 (tiny models run in microseconds)."""
    if value is None:
        return "–"
    ms = float(value)
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.2f}" if ms >= 1 else f"{ms:.3g}"


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _figure(value: Any) -> str:
    """A count with thousands separators, any other number to four significant digits."""
    if value is None:
        return "–"
    number = float(value)
    return f"{int(number):,}" if number.is_integer() and abs(number) >= 100 else f"{number:.4g}"


def _ratio(value: Any) -> str:
    return "–" if not value else f"{float(value):.1f}x"


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{float(value):.1f} s"


def _bytes(value: Any) -> str:
    if value is None:
        return "–"
    size = int(value)
    if size < 1000:
        return f"{size} B"
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.2f} MB"


def _shape(values: Sequence[int] | None) -> str:
    return "–" if not values else "×".join(str(v) for v in values)
