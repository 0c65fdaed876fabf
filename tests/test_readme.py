"""The README's Python example runs as written (in a temporary directory); its demo figures are measured ones."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    examples = [b for b in blocks if "archcompress.compress(" in b]
    assert len(examples) == 1, "the README has one Python example of compress()"
    return examples[0]


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHCOMPRESS_HOME", str(tmp_path / "home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(python_example(), "README.md", "exec"), {})
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "runs" / "lenet-run" / "report.html").is_file()
    assert (tmp_path / "runs" / "lenet-run" / "student" / "model.onnx").is_file()


# --- the demo's figures --------------------------------------------------------------------------------------

ROOT = README.parent
DEMO_RESULTS = ROOT / "benchmarks" / "results" / "demo.json"
# Figures in README text: 98.10%, 13.3x, 54 s, 2,310,986, 2026-12-04 and "2-core".
FIGURE = re.compile(r"\d{4}-\d{2}-\d{2}|\d+-core|\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:%|x\b| s\b)")


def demo_sections() -> list[str]:
    """The README's text between `<!-- demo figures ... -->` and `<!-- /demo figures -->`."""
    return re.findall(r"<!-- demo figures:.*?-->\n(.*?)<!-- /demo figures -->", README.read_text(), flags=re.DOTALL)


def demo_figures(record: dict) -> set[str]:
    """Every figure of a demo.json record as the README writes it."""
    teacher, student, compression = record["teacher"], record["student"], record["compression"]
    return {
        f"{teacher['test_accuracy']:.2%}",
        f"{teacher['params']:,}",
        f"{round(teacher['seconds'])} s",
        f"{round(record['compress_seconds'])} s",
        f"{student['params']:,}",
        f"{student['test_accuracy']:.2%}",
        f"{compression['params']:.1f}x",
        f"{compression['macs']:.1f}x",
        record["date"],
        f"{record['machine']['cpu_count']}-core",
    }


def test_the_readmes_demo_figures_are_those_of_the_last_make_demo_figures() -> None:
    record = json.loads(DEMO_RESULTS.read_text())
    sections = demo_sections()
    assert len(sections) == 2, "README.md marks the teacher's and the compression's demo figures"
    quoted = [figure for section in sections for figure in FIGURE.findall(section)]
    expected = demo_figures(record)
    assert set(quoted) <= expected, f"README figures not in {DEMO_RESULTS.name}: {set(quoted) - expected}"
    assert expected <= set(quoted), f"{DEMO_RESULTS.name} figures the README does not quote: {expected - set(quoted)}"


def test_the_figure_pattern_finds_every_kind_of_figure() -> None:
    text = "took 54 s and gave 174,236 params, 13.3x fewer (3.8x MACs), 97.70% on 2026-12-04, a 2-core machine"
    assert FIGURE.findall(text) == ["54 s", "174,236", "13.3x", "3.8x", "97.70%", "2026-12-04", "2-core"]


def test_demo_json_was_measured_with_the_makefiles_demo_commands() -> None:
    # `make demo-figures` passes the demo's own commands; a changed demo needs new figures.
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo-figures"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    (line,) = [line for line in dry_run.splitlines() if "demo_figures.py" in line]
    args = shlex.split(line)
    commands = [args[args.index("--teacher-command") + 1], args[args.index("--compress-command") + 1]]
    record = json.loads(DEMO_RESULTS.read_text())
    assert record["commands"] == commands, "the demo changed: run `make demo-figures` and update README.md"
    assert record["method"] == "n2n" and record["target_met"] is True
